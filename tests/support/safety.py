"""A safety check for platform tests: real matching of a few fixed words and e-mail addresses."""

from __future__ import annotations

import re

from atelier_sdk.safety import Category, Evidence, Finding, SafetyCheckBase, SafetyCheckManifest, Target

WORDS = {"violent": (Category.VIOLENCE, 0.95), "borderline": (Category.HARASSMENT, 0.6), "shady": (Category.ILLICIT, 0.3)}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


class WordCheck(SafetyCheckBase):
    manifest = SafetyCheckManifest(
        id="test_words", version="1.0.0", name="Test words", targets=frozenset({Target.INPUT, Target.OUTPUT}),
        categories=frozenset({Category.VIOLENCE, Category.HARASSMENT, Category.ILLICIT, Category.PERSONAL_DATA}),
    )

    def check_text(self, text, context):
        findings = []
        for match in re.finditer(r"\w+", text):
            if match.group().lower() in WORDS:
                category, score = WORDS[match.group().lower()]
                findings.append(Finding(category, score, self.manifest.id, (Evidence(match.start(), match.end(), match.group()),)))
        for match in EMAIL.finditer(text):
            findings.append(Finding(Category.PERSONAL_DATA, 1.0, self.manifest.id, (Evidence(match.start(), match.end(), match.group()),)))
        for term in context.blocklist:
            index = text.lower().find(term.pattern.lower())
            if index >= 0:
                findings.append(Finding(term.category, 1.0, self.manifest.id, (Evidence(index, index + len(term.pattern)),)))
        return findings


def words_and_a_check_not_running(monkeypatch, name: str, cause) -> None:
    """Make the next discovery find WordCheck and a check ``name`` that does not run: ``cause`` is a check
    class whose ``load`` raises, or the error of one that cannot be imported."""
    from atelier_sdk import safety_registry

    from atelier_platform.moderation.checks import replace_safety_checks

    missing = (safety_registry.SafetyCheckRecord(name=name, source="test", error=cause) if isinstance(cause, str)
               else safety_registry.SafetyCheckRecord(name=name, source="test", check=cause))
    records = [missing, safety_registry.SafetyCheckRecord(name="words", source="test", check=WordCheck)]
    monkeypatch.setattr(safety_registry, "discover_safety_checks", lambda extra_paths=(): records)
    replace_safety_checks(None)
