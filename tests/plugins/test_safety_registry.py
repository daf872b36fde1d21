"""Discovering safety checks: built-ins validate, broken checks are reported with a reason and skipped."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

from atelier_sdk.safety import Category, SafetyCheckBase, SafetyCheckManifest, Target
from atelier_sdk.safety_registry import SAFETY_CHECK_ENTRY_POINT_GROUP, discover_safety_checks

GROUP = SAFETY_CHECK_ENTRY_POINT_GROUP
BUILTIN_ENTRY_POINTS = {
    "blocklist": "atelier_plugins.safety.blocklist:BlocklistCheck",
    "profanity": "atelier_plugins.safety.profanity:ProfanityCheck",
    "personal_data": "atelier_plugins.safety.personal_data:PersonalDataCheck",
    "prompt_injection": "atelier_plugins.safety.prompt_injection:PromptInjectionCheck",
    "nudity": "atelier_plugins.safety.nudity:NudityCheck",
}


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


class _NoManifest(SafetyCheckBase):
    def check_text(self, text, context):
        return []


class _ImageCheckWithoutCode(SafetyCheckBase):
    manifest = SafetyCheckManifest(
        id="image_stub", version="1", name="x", targets=frozenset({Target.OUTPUT}),
        modalities=frozenset({"image"}), categories=frozenset({Category.SEXUAL}),
    )

    def check_text(self, text, context):
        return []


class _Good(SafetyCheckBase):
    manifest = {"id": "good_check", "version": "1", "name": "Good", "targets": ["input"], "categories": ["spam"]}

    def check_text(self, text, context):
        return []


def _fake_module():
    module = types.ModuleType("fake_safety_checks")
    module.NoManifest, module.ImageCheckWithoutCode, module.Good = _NoManifest, _ImageCheckWithoutCode, _Good
    module.NotACheck = dict
    sys.modules["fake_safety_checks"] = module


def test_builtin_checks_are_all_valid():
    records = discover_safety_checks([entry_point(n, v) for n, v in BUILTIN_ENTRY_POINTS.items()])
    assert [(r.name, r.state, r.error) for r in records] == [(n, "ok", None) for n in sorted(BUILTIN_ENTRY_POINTS)]
    assert {r.check.manifest.id for r in records} == set(BUILTIN_ENTRY_POINTS)


def test_broken_checks_are_reported_with_their_reason_and_never_crash_discovery():
    _fake_module()
    records = discover_safety_checks(
        [
            entry_point("missing", "no_such_module_here:Check"),
            entry_point("no_manifest", "fake_safety_checks:NoManifest"),
            entry_point("not_a_check", "fake_safety_checks:NotACheck"),
            entry_point("image_stub", "fake_safety_checks:ImageCheckWithoutCode"),
            entry_point("good", "fake_safety_checks:Good"),
            entry_point("good_again", "fake_safety_checks:Good"),
        ],
        extra_paths=["", "fake_safety_checks:Absent", "not-a-path"],
    )
    by_name = {r.name: r for r in records}
    assert by_name["missing"].state == "broken" and "import failed" in by_name["missing"].error
    assert "no_such_module_here" in by_name["missing"].error
    assert "manifest must be" in by_name["no_manifest"].error
    assert "not a subclass" in by_name["not_a_check"].error
    assert "does not implement check_images" in by_name["image_stub"].error
    assert by_name["good"].state == "ok" and by_name["good"].check.manifest.id == "good_check"
    assert "good_again" not in by_name  # the same class twice is one check
    assert by_name["Absent"].state == "broken" and "import failed" in by_name["Absent"].error
    assert by_name["not-a-path"].state == "broken"


def test_two_classes_with_one_id_the_second_is_broken():
    module = types.ModuleType("fake_dupes")

    class One(_Good):
        pass

    class Two(_Good):
        pass

    module.One, module.Two = One, Two
    sys.modules["fake_dupes"] = module
    records = discover_safety_checks([entry_point("one", "fake_dupes:One"), entry_point("two", "fake_dupes:Two")])
    by_name = {r.name: r for r in records}
    assert by_name["one"].state == "ok"
    assert "duplicate safety check id 'good_check'" in by_name["two"].error


def test_bad_manifest_is_reported():
    module = types.ModuleType("fake_bad_manifest")

    class BadManifest(SafetyCheckBase):
        manifest = {"id": "Bad Id", "version": "1", "name": "x", "targets": ["input"], "categories": ["spam"]}

        def check_text(self, text, context):
            return []

    module.BadManifest = BadManifest
    sys.modules["fake_bad_manifest"] = module
    (record,) = discover_safety_checks([entry_point("bad", "fake_bad_manifest:BadManifest")])
    assert record.state == "broken" and record.error.startswith("bad manifest: id")
