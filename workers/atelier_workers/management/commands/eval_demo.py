"""``python manage.py eval_demo``: the demo chatbot answers the shipped questions, through the platform.

Each question becomes a real chatbot job in a project of its own (``eval-demo``, holding the demo
knowledge base), run by the same job runner a worker uses: retrieval from the indexed knowledge
base, the demo model, screening, stored outputs. A question passes when the reply contains its key
fact and the sources name its document.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from atelier_platform.accounts.models import Project
from atelier_platform.accounts.services import create_project
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.jobs.models import Job
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_platform.knowledge.services import upsert_document
from atelier_workers import demo, knowledge
from atelier_workers.runtime import JobRunner, ModelCache, resolve_device
from atelier_plugins.chatbot.demo import EVAL_MAX_NEW_TOKENS

EVAL_SLUG = "eval-demo"
PASS_RATE = 0.8


class Command(BaseCommand):
    help = "Ask the demo chatbot the shipped questions through the platform and score its replies."

    def handle(self, *args, **options):
        if get_registry().get("chatbot") is None:
            raise CommandError("The chatbot plugin is not installed (see `manage.py plugins`).")
        project = Project.objects.filter(slug=EVAL_SLUG).first() or create_project(EVAL_SLUG, "Demo evaluation")
        set_plugin_enabled(project, "chatbot", True)
        for source_id, title, content in demo.demo_documents():
            upsert_document(project, source_id=source_id, title=title, content=content,
                            index_now=lambda document: knowledge.index_document(str(document.pk)))
        runner = JobRunner(get_registry(), ModelCache(resolve_device("auto")))
        questions = json.loads((demo.DEMO_DATA / "eval_questions.json").read_text(encoding="utf-8"))
        passed = 0
        self.stdout.write(f"{'ID':<5} {'OK':<4} {'FACT':<5} {'SOURCE':<7} QUESTION -> REPLY")
        for question in questions:
            try:
                job = submit_job(project, JobRequest("chatbot", {"messages": [{"role": "user", "content": question["question"]}]},
                                                     {"seed": 0, "max_new_tokens": EVAL_MAX_NEW_TOKENS})).job
            except JobServiceError as error:  # a quota used up, a blocked input: the platform refused, say why
                raise CommandError(f"Project {EVAL_SLUG!r} refused question {question['id']}: {error.message}") from None
            runner.run(str(job.pk))
            job = Job.objects.get(pk=job.pk)
            output = job.outputs.first()
            reply = output.content.get("reply", "") if output else f"({job.status}: {job.error_message})"
            sources = [s["source_id"] for s in output.content.get("sources", [])] if output else []
            fact, cited = question["key_fact"] in reply, question["source_id"] in sources
            passed += fact and cited
            self.stdout.write(f"{question['id']:<5} {'yes' if fact and cited else 'NO':<4} {'yes' if fact else 'no':<5} "
                              f"{'yes' if cited else 'no':<7} {question['question'][:60]} -> {reply[:90]!r}")
        total = len(questions)
        self.stdout.write(f"\n{passed} of {total} questions answered with the key fact and its source ({passed / total:.0%}).")
        self.stdout.write(json.dumps({"passed": passed, "total": total, "rate": round(passed / total, 3)}))
        if passed < PASS_RATE * total:
            raise CommandError(f"Below the {PASS_RATE:.0%} the demo promises.")
