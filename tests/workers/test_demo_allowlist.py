"""The demo shop's allow list, through the real safety checks: its catalogue's copy about wool is not harassment,
and the contacts its knowledge base publishes do not block the chatbot's answers as personal data."""

from __future__ import annotations

import json

import pytest
from atelier_sdk.safety import Target

from atelier_platform.accounts.services import create_project
from atelier_platform.moderation.checks import get_safety_checks, replace_safety_checks
from atelier_platform.moderation.policies import allow_entry, import_allowlist
from atelier_platform.moderation.screening import policy_for, screen
from atelier_plugins.recommender_copy.copywriting import template_texts
from atelier_plugins.recommender_copy.schemas import CatalogueItem
from atelier_plugins.safety.personal_data import find_personal_data
from atelier_workers import demo

# what the user saw: the chatbot quoting the support contact, and a merino scarf's copy
ANSWER = "You can e-mail us at support@lumenloom.example. You can call us on 1-800-555-0142."
SCARF_COPY = "Merino wool scarf."


def demo_copy() -> list[str]:
    """Every English copy variant the recommender writes from the demo catalogue's own facts, and the scarf's."""
    items = json.loads((demo.DEMO_DATA / "catalogue.json").read_text(encoding="utf-8"))
    copy = [SCARF_COPY]
    for item in items:
        if item["lang"] == "en":
            copy += template_texts(CatalogueItem(**{k: v for k, v in item.items() if k in CatalogueItem.model_fields}), "en")
    return copy


def demo_knowledge_base() -> list[str]:
    return [content for _source, _title, content in demo.demo_documents()]


def test_every_contact_the_knowledge_base_publishes_is_on_the_list():
    listed = {(kind, allow_entry(kind, value)[1]) for kind, value in demo.DEMO_ALLOWLIST}
    published = {(m.kind, m.key) for text in demo_knowledge_base() for m in find_personal_data(text)}
    assert published and published <= listed


@pytest.mark.django_db
def test_the_demo_shops_copy_and_answers_pass_the_real_checks():
    replace_safety_checks(None)  # the installed checks, as `make run` screens
    assert {"blocklist", "profanity", "personal_data"} <= {check.manifest.id for check in get_safety_checks()}
    shop, bare = create_project("demo", "Demo project"), create_project("bare", "No allow list")
    import_allowlist(shop, "system:prepare_demo", demo.demo_allowlist())  # what prepare_demo does
    texts = [(f"output.{i}", text) for i, text in enumerate([ANSWER, *demo_knowledge_base(), *demo_copy()])]

    without = screen(bare, Target.OUTPUT, texts, policy=policy_for(bare))
    assert without["decision"] == "block" and "personal_data" in without["flagged"]

    report = screen(shop, Target.OUTPUT, texts, policy=policy_for(shop, fresh=True))
    assert report["flagged"] == [] and report["decision"] == "pass", [
        (f["field"], f["category"], f["score"], f["evidence"]) for f in report["findings"] if f["score"] >= 0.5]
