"""``python manage.py prepare_demo``: demo models (cached) and the demo project's knowledge base."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from atelier_platform.accounts.models import Project
from atelier_platform.accounts.services import create_project
from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.services import enable_installed_plugins, installed_plugin
from atelier_platform.evaluation.models import ReferenceSet
from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.knowledge.services import upsert_document
from atelier_platform.moderation.models import AuditEvent
from atelier_platform.moderation.policies import import_allowlist
from atelier_workers import demo, knowledge

DEMO_SLUG = "demo"
DEMO_IMAGE_SET = "Digits (demo)"
DEMO_QUESTION_SET = "Shop questions (demo)"


class Command(BaseCommand):
    help = "Train the small demo models (once; cached under the models root) and load the demo knowledge base."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild the models even if they are current")
        parser.add_argument("--models-only", action="store_true", help="do not touch the database")

    def handle(self, *args, force: bool, models_only: bool, **options):
        for model in demo.DEMO_MODELS:
            if model.is_current() and not force:
                self.stdout.write(f"demo model {model.name}: up to date ({model.target})")
                continue
            bar = tqdm(total=1, desc=f"demo model {model.name}", unit="step", dynamic_ncols=True)

            def progress(step: int, total: int, message: str = "", bar=bar) -> None:
                bar.total = max(total, 1)
                bar.n = min(step, bar.total)
                bar.set_postfix_str(message[:60], refresh=False)
                bar.refresh()

            try:
                figures = model.build(progress)
            except Exception as error:
                bar.close()
                raise CommandError(f"building demo model {model.name} failed: {type(error).__name__}: {error}") from error
            bar.close()
            self.stdout.write(f"demo model {model.name}: built in {figures.get('seconds_total')} s -> {model.target}")
        if models_only:
            return
        project = Project.objects.filter(slug=DEMO_SLUG).first() or create_project(DEMO_SLUG, "Demo project")
        enable_installed_plugins(project)
        # The shop's defaults once: an owner's own brand voice and banned words survive every `make run`.
        for setting in ProjectPlugin.objects.filter(project=project, plugin_id="recommender_copy"):
            if "params" not in setting.config:
                setting.config = {**setting.config, "params": demo.recommender_defaults()}
                setting.save(update_fields=["config", "updated_at"])
        # The shop's allow list once, like its defaults: an owner's own list stays as they made it, an emptied one
        # included (the audit log says whether a list was ever set).
        if not AuditEvent.objects.filter(project=project, action="allowlist_imported").exists():
            import_allowlist(project, "system:prepare_demo", demo.demo_allowlist())
        # The digits image reference set once, like the allow list: one an owner deleted stays deleted.
        if installed_plugin("image") is not None and not AuditEvent.objects.filter(
                project=project, action="reference_set_created", after__name=DEMO_IMAGE_SET).exists():
            from atelier_platform.evaluation.services import create_reference_set
            from atelier_plugins.image.demo_features import demo_reference_cases

            if not ReferenceSet.objects.filter(project=project, name=DEMO_IMAGE_SET).exists():
                create_reference_set(project, plugin_id="image", name=DEMO_IMAGE_SET, cases=demo_reference_cases(),
                                     description="Two real digits of each kind (scikit-learn's data set) for the demo "
                                                 "image model to draw.", actor="system:prepare_demo")
                self.stdout.write(f"demo image reference set: {DEMO_IMAGE_SET}")
        documents = demo.demo_documents()
        changed = 0
        for source_id, title, content in tqdm(documents, desc="demo knowledge base", unit="doc", dynamic_ncols=True):
            _, was_changed = upsert_document(
                project, source_id=source_id, title=title, content=content,
                index_now=lambda document: knowledge.index_document(str(document.pk)),
            )
            changed += was_changed
        self.stdout.write(f"demo knowledge base: {len(documents)} documents, {changed} (re)indexed")
        # The shop's questions once, after the knowledge base their expected sources name: one an owner deleted stays
        # deleted, as the digits set does.
        if installed_plugin("chatbot") is not None and not AuditEvent.objects.filter(
                project=project, action="reference_set_created", after__name=DEMO_QUESTION_SET).exists():
            from atelier_platform.evaluation.services import create_reference_set

            if not ReferenceSet.objects.filter(project=project, name=DEMO_QUESTION_SET).exists():
                create_reference_set(project, plugin_id="chatbot", name=DEMO_QUESTION_SET, cases=demo.demo_question_cases(set(
                    KnowledgeDocument.objects.filter(project=project).values_list("source_id", flat=True))),
                                     description="The shop's customer questions: each answer scored against its key "
                                                 "fact (chrF), its sources against the document holding that fact "
                                                 "(source recall and precision).", actor="system:prepare_demo")
                self.stdout.write(f"demo chatbot reference set: {DEMO_QUESTION_SET}")
