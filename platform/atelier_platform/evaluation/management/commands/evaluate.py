"""``python manage.py evaluate --project SLUG --set NAME_OR_ID [--model-version ID_OR_NAME] [--compare-to RUN_ID|pinned]
[--max-drop METRIC=N ...] [--timeout SECONDS] [--key KEY] [--json]``

Evaluation in a release pipeline: start a run (the API's service: the same checks, queue and audit), wait for it
(progress on stderr, a line every few seconds), compare it with a baseline and check the limits. Exit status:
0 the run succeeded and no limit was passed; 1 a limit was passed (each one named, by how much, against which run),
fewer cases answered than the baseline's included; 2 the run failed, was cancelled or timed out (its cases answered
of how many said: a cancelled run is never gated, nor is one a baseline), or the arguments were wrong. A readable summary goes to stdout, or,
with ``--json``, to stderr, stdout then holding one JSON object only.
"""

from __future__ import annotations

import json
import time
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from atelier_platform.accounts.models import Project
from atelier_platform.evaluation import comparison, gate, services
from atelier_platform.evaluation.models import FINISHED_RUN_STATUSES, EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.evaluation.serializers import RunSummarySerializer
from atelier_platform.jobs.errors import JobServiceError

PASSED, GATE_FAILED, NOT_EVALUATED = 0, 1, 2
ACTOR = "cli:evaluate"
#: the prefix of the Idempotency-Key a --key makes: never the same as an API caller's or the dashboard's own keys
KEY_PREFIX = "cli:"
#: a progress line when the run moved, at most this often; and one this often whatever happened
PROGRESS_EVERY_S = 5.0
HEARTBEAT_S = 30.0
#: the longest --timeout and --poll: a week
MAX_WAIT_S = 7 * 24 * 3600.0
#: the worst cases named in the summary (the JSON's ``worst_cases``)
WORST_CASES_SHOWN = 5


class Refused(Exception):
    """Nothing to evaluate as asked (exit 2)."""


class Command(BaseCommand):
    help = ("Start an evaluation run, wait for it, compare it with a baseline and check how far each metric may drop: "
            "exit 0 passed, 1 a limit passed, 2 the run failed, was cancelled or timed out, or bad arguments.")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="the project's slug")
        parser.add_argument("--set", required=True, dest="reference_set", metavar="NAME_OR_ID",
                            help="the reference set, by its name or id")
        parser.add_argument("--model-version", metavar="ID_OR_NAME",
                            help="the model version to evaluate, by id or name (default: the project's current model)")
        parser.add_argument("--compare-to", metavar="RUN_ID|pinned",
                            help="the baseline: a run's id, or 'pinned' for the newest succeeded run of the set on the "
                                 "version the project has pinned now (the default model if none)")
        parser.add_argument("--max-drop", action="append", default=[], metavar="METRIC=N",
                            help="fail (exit 1) if METRIC is more than N worse than the baseline's; repeatable. Text: "
                                 f"{', '.join(gate.metric_names('chatbot'))}; images: {', '.join(gate.metric_names('image'))} "
                                 "(FID and KID: a rise is worse)")
        parser.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                            help="give up waiting after this long (exit 2; default 1800)")
        parser.add_argument("--cancel-on-timeout", action="store_true",
                            help="cancel the run when the timeout passes (default: it goes on)")
        parser.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="how often the run is read")
        parser.add_argument("--key", help="start the run once per key (an Idempotency-Key): run again with the same "
                                          "key, the command waits for and reports the run the first started")
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout (the summary on stderr)")

    def handle(self, *args, **options):
        self.as_json = options["json"]
        self.summary = self.stderr if self.as_json else self.stdout
        try:
            report = self.evaluate(options)
        except Refused as refusal:
            report = {"outcome": "refused", "exit_code": NOT_EVALUATED, "message": str(refusal)}
        if self.as_json:
            self.stdout.write(json.dumps(report, cls=DjangoJSONEncoder, ensure_ascii=False))
        elif report["outcome"] != "refused":
            self.summary.write(f"Result: {report['message']}")
        if report["exit_code"] != PASSED:
            # the message on stderr (as "CommandError: ..."), and the exit status
            raise CommandError(report["message"], returncode=report["exit_code"])

    # --- the steps ---------------------------------------------------------------------------------------------

    def evaluate(self, options) -> dict:
        for name in ("timeout", "poll"):
            # NaN compares false, and a sleep of more than the OS's clock holds (inf, 1e308) is an OverflowError
            if not 0 < options[name] <= MAX_WAIT_S:
                raise Refused(f"--{name}: a number of seconds above 0, at most {MAX_WAIT_S:g} (a week; got "
                              f"{options[name]:g}).")
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise Refused(f"No project {options['project']!r}.")
        reference_set = self._reference_set(project, options["reference_set"])
        version_id = self._version_id(project, reference_set, options["model_version"])
        max_drops = {}
        if options["max_drop"]:
            if not options["compare_to"]:
                raise Refused("--max-drop needs a baseline: add --compare-to RUN_ID or --compare-to pinned.")
            try:
                max_drops = gate.parse_max_drops(reference_set.plugin_id, options["max_drop"])
            except gate.GateError as error:
                raise Refused(f"--max-drop: {_said(error)}") from None
        # the baseline before the run: a wrong one costs no run, and "pinned" never finds the new run itself
        baseline = self._baseline(project, reference_set, options["compare_to"]) if options["compare_to"] else None

        key = options["key"]
        if key is not None and not (1 <= len(key) <= 255 - len(KEY_PREFIX) and key.isascii() and key.isprintable()):
            raise Refused(f"--key: 1 to {255 - len(KEY_PREFIX)} printable ASCII characters.")
        try:
            run, started = services.start_run_once(project, reference_set, model_version_id=version_id, actor=ACTOR,
                                                   idempotency_key=KEY_PREFIX + key if key else None)
        except JobServiceError as error:
            raise Refused(f"The run was not started: {_said(error)}") from None
        self._line(f"{'Started' if started else 'Resumed (same --key)'} evaluation run {run.pk} of "
                   f"{reference_set.name!r} ({reference_set.plugin_id}, {run.cases_total} cases).")
        if baseline is not None and not started:
            # a replay: the run may have ended, and be the newest run on the pinned version itself; measure it against
            # what its first start measured it against, the newest such run before it (never itself)
            baseline = self._baseline(project, reference_set, options["compare_to"], before=run)

        ended = gate.wait_for_end(run.pk, timeout_s=options["timeout"], poll_s=options["poll"],
                                  on_progress=self._progress_printer(), sleep=_sleep, clock=time.monotonic)
        if ended is None:
            return self._timed_out(run, options)
        return self._report(ended, baseline, max_drops)

    def _reference_set(self, project, named) -> ReferenceSet:
        sets = ReferenceSet.objects.filter(project=project).defer("cases")
        found = None
        try:
            found = sets.filter(pk=uuid.UUID(named)).first()
        except ValueError:
            pass
        found = found or sets.filter(name=named).first()
        if found is None:
            names = list(sets.order_by("name").values_list("name", flat=True)[:20])
            raise Refused(f"No reference set {named!r} in project {project.slug!r}"
                          + (f"; it has: {', '.join(names)}." if names else "; it has none yet."))
        return ReferenceSet.objects.get(pk=found.pk)  # with its cases: the run submits them

    def _version_id(self, project, reference_set, named) -> int | None:
        if named is None:
            return None
        versions = services.evaluable_model_versions(project, reference_set.plugin_id)
        # an id the database's integer column can hold (a longer number is no id: a name, or nothing)
        # (ASCII digits: "²" and other Unicode digits pass isdigit() but int() refuses them)
        found = versions.filter(pk=int(named)).first() if named.isascii() and named.isdigit() and int(named) < 2**31 \
            else None
        found = found or versions.filter(version=named).first()
        if found is None:
            raise Refused(f"No model version {named!r} of {reference_set.plugin_id} that project {project.slug!r} may "
                          "evaluate (see GET /api/v1/model-versions/?plugin=" + reference_set.plugin_id + ").")
        return found.pk

    def _baseline(self, project, reference_set, named, *, before: EvaluationRun | None = None) -> EvaluationRun:
        if named == "pinned":
            baseline = gate.pinned_baseline(project, reference_set, before=before)
            if baseline is None:
                pinned = gate.pinned_version(project, reference_set.plugin_id)
                raise Refused(f"No succeeded run of {reference_set.name!r} on the pinned version "
                              f"({gate.version_words(pinned)}) to compare with: evaluate it first (this command "
                              "without --model-version and --compare-to).")
            return baseline
        try:
            run_id = uuid.UUID(named)
        except ValueError:
            raise Refused(f"--compare-to: a run's id or 'pinned' (got {named!r}).") from None
        baseline = (EvaluationRun.objects.filter(project=project, pk=run_id).select_related("model_version")
                    .defer("results").first())
        if baseline is None:
            raise Refused(f"--compare-to: no evaluation run {named} in project {project.slug!r}.")
        if before is not None and baseline.pk == before.pk:
            raise Refused(f"--compare-to: run {named} is the run this --key started: a run compared with itself "
                          "shows nothing; give another run of the set, or pinned.")
        if baseline.reference_set_id != reference_set.pk:
            raise Refused(f"--compare-to: run {named} answered another reference set, not {reference_set.name!r}.")
        if not comparison.is_scored(baseline):
            raise Refused(f"--compare-to: run {named} has not ended ({baseline.status}); give an ended run.")
        if baseline.status != RunStatus.SUCCEEDED:
            # a cancelled run's figures average the few cases it answered: measured against them, a run answering
            # every case would pass or fail for nothing it did
            answered = gate.Answered.of(baseline)
            raise Refused(f"--compare-to: run {named} {baseline.status} with {answered} cases answered: only a "
                          "succeeded run is a baseline; give another run of the set, or pinned.")
        return baseline

    def _timed_out(self, run, options) -> dict:
        run = EvaluationRun.objects.select_related("reference_set", "model_version").get(pk=run.pk)
        message = f"Timed out after {options['timeout']:g} s: run {run.pk} is {run.status} " \
                  f"({run.cases_done} of {run.cases_total} cases done)"
        if options["cancel_on_timeout"]:
            try:
                run = services.cancel_run(run, actor=ACTOR)
                message += "; cancelled."
            except services.RunFinished:
                message += "; it has just ended."
        else:
            message += f"; it goes on (cancel it: POST /api/v1/evaluation/runs/{run.pk}/cancel/)."
        return {"outcome": "timed_out", "exit_code": NOT_EVALUATED, "message": message,
                "run": RunSummarySerializer(run).data, "url": _url(run)}

    def _report(self, run, baseline, max_drops) -> dict:
        report = {"run": RunSummarySerializer(run).data, "url": _url(run), "compared_to": None, "metrics": None,
                  "set_changed": None, "inputs_compared": None, "gates": [], "worst_cases": []}
        self._describe(run)
        if run.status != RunStatus.SUCCEEDED:
            said = f": {run.error_message}" if run.error_message else ""
            return {**report, "outcome": f"run_{run.status}", "exit_code": NOT_EVALUATED,
                    "message": f"Run {run.pk} {run.status}{said}"}
        if baseline is None:
            return {**report, "outcome": "passed", "exit_code": PASSED, "message": f"Run {run.pk} succeeded."}
        baseline = EvaluationRun.objects.select_related("reference_set", "model_version").filter(pk=baseline.pk).first()
        if baseline is None:  # deleted (with its set) while the run went
            raise Refused("The baseline run was deleted while the run went: nothing to compare with.")
        try:
            compared = comparison.compare(run, baseline)
        except services.EvaluationError as error:
            raise Refused(f"--compare-to: {_said(error)}") from None
        try:
            results = gate.check(compared, max_drops)
        except gate.GateError as error:  # (both runs succeeded here: checked above and in _baseline)
            raise Refused(error.message) from None
        report.update(compared_to=RunSummarySerializer(baseline).data,
                      metrics=[change.as_dict() for change in compared.metrics], set_changed=compared.set_changed,
                      inputs_compared=compared.inputs_compared,
                      gates=[result.as_dict() for result in results],
                      worst_cases=[pair.as_dict() for pair in compared.cases[:WORST_CASES_SHOWN]])
        self._describe_comparison(compared, results)
        failed = [result for result in results if not result.passed]
        if failed:
            return {**report, "outcome": "gate_failed", "exit_code": GATE_FAILED,
                    "message": f"Gate failed against run {baseline.pk} ({_model(baseline)}): "
                               + "; ".join(result.reason for result in failed) + "."}
        held = f", {len(results)} limit{'s' if len(results) != 1 else ''} held" if results else ""
        return {**report, "outcome": "passed", "exit_code": PASSED,
                "message": f"Run {run.pk} succeeded{held} against run {baseline.pk} ({_model(baseline)})."}

    # --- what is printed ------------------------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        self.stderr.write(text)

    def _progress_printer(self):
        last = {"progress": None, "at": float("-inf")}

        def show(progress: gate.Progress) -> None:
            now = time.monotonic()
            moved = progress != last["progress"]
            ended = progress.status in FINISHED_RUN_STATUSES and not progress.scoring  # the last reading: always said
            if not ((moved and (ended or now - last["at"] >= PROGRESS_EVERY_S)) or now - last["at"] >= HEARTBEAT_S):
                return
            last.update(progress=progress, at=now)
            failed = f", {progress.failed} failed" if progress.failed else ""
            scoring = "; a worker is scoring the images" if progress.scoring else ""
            self._line(f"  {progress.status}: {progress.done}/{progress.total} cases done{failed}{scoring}")

        return show

    def _describe(self, run) -> None:
        metrics = run.metrics or {}
        names = gate.metric_names(run.plugin_id)
        figures = "  ".join(f"{name} {_figure(metrics.get(name))}" for name in names)
        self.summary.write(f"Run {run.pk} of {run.reference_set.name!r} ({run.plugin_id}) on {_model(run)}: "
                           f"{run.status}, {metrics.get('succeeded', 0)}/{run.cases_total} cases answered.")
        self.summary.write(f"  {figures}")

    def _describe_comparison(self, compared, results) -> None:
        to = compared.to
        ended = f", ended {to.finished_at:%Y-%m-%d %H:%M} UTC" if to.finished_at else ""
        self.summary.write(f"Compared with run {to.pk} ({_model(to)}{ended}):")
        for change in compared.metrics:
            delta = "—" if change.delta is None else f"{change.delta:+.4g}"
            self.summary.write(f"  {change.name:<16} {_figure(change.run):>9} vs {_figure(change.to):>9}  {delta:>9}  "
                               f"({change.better} is better; {change.change or 'not compared'})")
        if compared.set_changed:
            self.summary.write("  Note: the reference set changed between the runs: some cases were scored against "
                               "other references or asked with another input.")
        if not compared.inputs_compared:
            self.summary.write("  Note: a run started before cases' inputs were recorded: an input edited without its "
                               "reference cannot be seen (compared by references alone).")
        worst = [pair for pair in compared.cases[:WORST_CASES_SHOWN]
                 if pair.change == "newly_failed" or (pair.delta is not None and pair.delta < 0)]
        if worst:
            self.summary.write("  Worst cases: " + ", ".join(
                f"#{pair.index} {'failed' if pair.change == 'newly_failed' else f'{pair.delta:+.4g}'}" for pair in worst))
        for result in results:
            self.summary.write(f"  {'PASS' if result.passed else 'FAIL'}  {result.reason}")


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _said(error: JobServiceError) -> str:
    details = error.details if isinstance(error.details, dict) else {}
    named = "; ".join(f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
                      for field, messages in details.items())
    return f"{error.message} ({named})" if named else error.message


def _model(run: EvaluationRun) -> str:
    if run.model_version is not None:
        return run.model_version.version
    answered = gate.answered_by(run)
    return f"the current model, {gate.answered_by_words(answered)}" if answered else "the current model"


def _figure(value) -> str:
    # KID and similarities are fractions: their digits, not two decimals
    if value is None:
        return "—"
    return f"{value:.4g}" if 0 < abs(value) < 1 else f"{value:.2f}"


def _url(run: EvaluationRun) -> str:
    from atelier_platform.webhooks.events import api_url

    return api_url(f"/api/v1/evaluation/runs/{run.pk}/")
