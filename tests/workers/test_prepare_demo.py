"""The demo preparation command: models built once and cached, the demo knowledge base indexed."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from atelier_platform.accounts.models import Project
from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.moderation.models import AllowlistEntry, AuditEvent
from atelier_platform.moderation.policies import import_allowlist
from atelier_workers import demo
from tests.support import demo_recipe


@pytest.fixture
def recipe(monkeypatch):
    model = demo.DemoModel("test-recipe", "tests.support.demo_recipe")
    monkeypatch.setattr(demo, "DEMO_MODELS", (model,))
    Path(demo_recipe.BUILDS_FILE).unlink(missing_ok=True)
    shutil.rmtree(model.target, ignore_errors=True)
    return model


def builds() -> int:
    path = Path(demo_recipe.BUILDS_FILE)
    return len(path.read_text().split()) if path.exists() else 0


def run(*args) -> str:
    out = io.StringIO()
    call_command("prepare_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_models_are_built_once_then_cached(recipe, db):
    assert "built in" in run("--models-only")
    assert (recipe.target / "weights.txt").read_text().count(".md") == 10
    marker = json.loads((recipe.target / demo.MARKER).read_text())
    assert marker["figures"]["documents"] == 10 and marker["recipe"] == recipe.recipe()
    assert "up to date" in run("--models-only")
    assert builds() == 1
    run("--models-only", "--force")
    assert builds() == 2
    assert not recipe.target.with_name(recipe.target.name + ".building").exists()


def test_a_changed_recipe_rebuilds(recipe, db):
    run("--models-only")
    marker = recipe.target / demo.MARKER
    marker.write_text(json.dumps({"recipe": "an older recipe"}))
    assert not recipe.is_current()
    run("--models-only")
    assert builds() == 2 and recipe.is_current()


@pytest.mark.django_db(transaction=True)
def test_demo_project_gets_the_indexed_knowledge_base(recipe):
    run()
    project = Project.objects.get(slug="demo")
    documents = KnowledgeDocument.objects.filter(project=project)
    assert documents.count() == len(demo.demo_documents()) >= 16
    assert set(documents.values_list("state", flat=True)) == {"indexed"}
    assert documents.get(source_id="en/returns-policy").chunks.count() >= 2
    # the shop's allow list (its published contacts, its product words), set once: not again on the next run
    assert set(AllowlistEntry.objects.filter(project=project).values_list("kind", "value")) == set(demo.DEMO_ALLOWLIST)
    assert "0 (re)indexed" in run()  # nothing changed: nothing re-embedded
    assert AuditEvent.objects.filter(project=project, action="allowlist_imported").count() == 1
    # an owner who empties the list keeps it empty: the next `make run` does not put the demo's back
    import_allowlist(project, "user:owner", [], replace=True)
    run()
    assert not AllowlistEntry.objects.filter(project=project).exists()


def test_demo_project_gets_a_digits_image_reference_set_once(recipe, transactional_db, empty_plugin_registry):
    from atelier_platform.evaluation.models import ReferenceSet
    from atelier_platform.evaluation.services import delete_reference_set
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    run()
    digits = ReferenceSet.objects.get(project__slug="demo", plugin_id="image")
    assert len(digits.cases) == 20 and digits.images.count() == 20
    assert digits.cases[0]["input"] == {"prompt": "a handwritten digit 0"}
    assert digits.cases[0]["reference"]["width"] == 32
    delete_reference_set(digits, actor="user:owner")
    run()  # an owner's deletion stands
    assert not ReferenceSet.objects.filter(plugin_id="image").exists()


def test_the_demo_feature_extractor_tells_the_digits_apart(tmp_path):
    """Trained on the digits, its features put a digit nearer to another of its kind than to the others."""
    from atelier_plugins.image import features
    from atelier_plugins.image.demo_features import demo_reference_cases, prepare_demo_model
    import base64

    figures = prepare_demo_model(tmp_path / "features", steps=120)
    assert figures["held_out_accuracy"] > 0.9 and (tmp_path / "features" / "model.safetensors").exists()
    extractor = features.load_extractor(tmp_path / "features")
    pictures = [base64.b64decode(case["reference"]) for case in demo_reference_cases()]  # two of each digit
    same = features.score(extractor, pictures[0::2], pictures[1::2]).similarities
    shifted = pictures[1::2][1:] + pictures[1::2][:1]  # each digit against the next digit's picture
    other = features.score(extractor, pictures[0::2], shifted).similarities
    assert sum(same) / 10 > sum(other) / 10 + 0.05


def test_eval_demo_refused_a_job_says_why_instead_of_a_traceback(db, empty_plugin_registry, monkeypatch):
    """A quota used up (an operator's ATELIER_QUOTA_JOBS_PER_DAY, a second run the same day) ends eval_demo with
    the refusal's message, not a traceback from the middle of the run."""
    from django.core.management import CommandError

    from atelier_plugins.chatbot.plugin import ChatbotPlugin
    from atelier_platform.accounts.services import create_project
    from atelier_platform.usage.models import ProjectQuota
    from atelier_workers import knowledge
    from atelier_workers.management.commands import eval_demo
    from tests.api.helpers import build_job

    empty_plugin_registry.register(ChatbotPlugin)
    monkeypatch.setattr(knowledge, "index_document", lambda document_id: None)  # no embedding model to load here
    project = create_project(eval_demo.EVAL_SLUG, "Demo evaluation")
    ProjectQuota.objects.create(project=project, jobs_per_day=1)
    build_job(project)
    with pytest.raises(CommandError, match="quota of 1 jobs per day"):
        call_command("eval_demo", stdout=io.StringIO(), stderr=io.StringIO())


def test_demo_project_gets_its_shop_questions_with_the_sources_expected_once(recipe, transactional_db,
                                                                            empty_plugin_registry):
    """Each question of the demo data names the document holding its key fact: the set scores the chatbot's sources."""
    from atelier_platform.evaluation.models import ReferenceSet
    from atelier_platform.evaluation.services import delete_reference_set
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    run()
    questions = ReferenceSet.objects.get(project__slug="demo", plugin_id="chatbot")
    assert questions.name == "Shop questions (demo)" and len(questions.cases) == 12
    first = questions.cases[0]
    assert first["reference"] == "over $75" and first["reference_sources"] == ["en/shipping-policy"]
    assert first["input"]["use_knowledge"] is True
    assert {source for case in questions.cases for source in case["reference_sources"]} <= set(
        KnowledgeDocument.objects.filter(project__slug="demo").values_list("source_id", flat=True))
    run()
    assert ReferenceSet.objects.filter(plugin_id="chatbot").count() == 1
    delete_reference_set(questions, actor="user:owner")
    run()  # an owner's deletion stands
    assert not ReferenceSet.objects.filter(plugin_id="chatbot").exists()


def test_a_demo_question_whose_document_is_gone_keeps_its_text_reference(recipe, transactional_db, empty_plugin_registry,
                                                                       monkeypatch):
    """The set is checked against the knowledge base: a document missing there (an owner deleted it) would have
    refused the whole set, and stopped `make run`."""
    from atelier_platform.evaluation.models import ReferenceSet
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    every = demo.demo_documents()
    monkeypatch.setattr(demo, "demo_documents", lambda: [d for d in every if d[0] != "en/shipping-policy"])
    run()
    first = ReferenceSet.objects.get(project__slug="demo", plugin_id="chatbot").cases[0]
    assert first["reference"] == "over $75" and "reference_sources" not in first
