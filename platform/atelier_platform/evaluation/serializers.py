from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from atelier_platform.api.serializers import InstantInputField, StrictSerializer
from atelier_platform.evaluation.comparison import DEFAULT_CASE_LIMIT as COMPARE_DEFAULT_LIMIT
from atelier_platform.evaluation.comparison import MAX_CASE_LIMIT as COMPARE_MAX_LIMIT
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceSet
from atelier_platform.evaluation import relevance
from atelier_platform.evaluation.services import MAX_CASES
from atelier_platform.evaluation.uploads import MAX_UPLOAD_BYTES
from atelier_platform.evaluation.watch import MAX_INTERVAL_HOURS, MIN_INTERVAL_HOURS, NEXT_RUN_PAST_LEEWAY


class CaseSerializer(serializers.Serializer):
    """One case (documentation: the service checks cases, against the plugin's schemas, naming each bad one)."""

    input = serializers.DictField(help_text="Must match the plugin's input_schema (GET /api/v1/plugins/).")
    params = serializers.DictField(required=False, help_text="Must match the plugin's params_schema; a case without a "
                                                            "seed runs with seed 0, so that versions compare fairly.")
    reference = serializers.JSONField(required=False, allow_null=True, help_text=(
        "The answer the project expects: a text; for the image plugin an image, base64 PNG or JPEG (a data: URL too; at "
        "most 8 MiB and 4096x4096 pixels), shown back as {image: sha256, media_type, width, height, url}. Optional "
        "(null once saved) in a case that gives reference_items or reference_sources; a case needs one reference."))
    reference_items = serializers.JSONField(required=False, help_text=(
        f"recommender_copy: the ids of the case's candidate items (input.items) relevant for its profile, a list, or "
        f"graded {{\"id\": gain}} (gains above 0, at most {relevance.MAX_GAIN}); the ranking is scored with hit rate@k, "
        f"MRR and NDCG@k."))
    reference_sources = serializers.ListField(child=serializers.CharField(), required=False, help_text=(
        f"chatbot with use_knowledge: the documents of the project's knowledge base that should ground the answer, by "
        f"source id or title (at most {relevance.MAX_REFERENCE_SOURCES}; saved as source ids); the answer's sources "
        f"are scored with source recall@k and precision@k."))
    k = serializers.IntegerField(required=False, min_value=1, max_value=relevance.MAX_K, help_text=(
        "The cut-off of the ranking or retrieval metrics; by default the number of items or passages the answer holds."))


@extend_schema_field(CaseSerializer(many=True))
class CasesField(serializers.JSONField):
    """Taken as sent and checked by the service: its errors name the case and the field (``cases.3.input.messages``)."""


class ReferenceSetCreateSerializer(StrictSerializer):
    plugin = serializers.CharField(max_length=63, help_text="chatbot or recommender_copy (text answers scored against "
                                                            "reference texts) or image (against reference images).")
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    cases = CasesField(help_text=f"1 to {MAX_CASES} cases: input, optional params, reference.")


class ReferenceSetUploadSerializer(StrictSerializer):
    """A reference set from a file, as the dashboard takes one (multipart/form-data)."""

    plugin = serializers.CharField(max_length=63, help_text="chatbot or recommender_copy (text answers are scored, and "
                                                            "sources or rankings where a case gives their references).")
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    # an empty file is the service's to refuse, in its words ("The file is empty.")
    file = serializers.FileField(allow_empty_file=True, max_length=255, help_text=(
        f"A .csv (UTF-8, a header line: for chatbot, question and reference; for recommender_copy, title and reference, "
        f"optional description, interests, tone, language) or a .jsonl file (a case a line: input, params, "
        f"reference); at most {MAX_CASES} cases and {MAX_UPLOAD_BYTES // 2**20} MiB."))


class ReferenceSetUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    cases = CasesField(required=False, help_text="Replaces every case.")


class ReferenceSetSummarySerializer(serializers.ModelSerializer):
    plugin = serializers.CharField(source="plugin_id")
    case_count = serializers.SerializerMethodField()

    class Meta:
        model = ReferenceSet
        fields = ["id", "plugin", "name", "description", "case_count", "created_at", "updated_at"]

    def get_case_count(self, reference_set: ReferenceSet) -> int:
        counted = getattr(reference_set, "case_count", None)  # ReferenceSet.objects.with_case_count(): no cases read
        return counted if counted is not None else len(reference_set.cases)


def reference_image_url(reference_set_id, reference) -> str | None:
    if isinstance(reference, dict) and reference.get("image"):
        return f"/api/v1/evaluation/reference-sets/{reference_set_id}/images/{reference['image']}/"
    return None


class ReferenceSetSerializer(ReferenceSetSummarySerializer):
    cases = CasesField(read_only=True)

    class Meta(ReferenceSetSummarySerializer.Meta):
        fields = [*ReferenceSetSummarySerializer.Meta.fields, "cases"]

    def to_representation(self, reference_set: ReferenceSet) -> dict:
        shown = super().to_representation(reference_set)
        cases = shown.get("cases") or []
        if any(isinstance(case.get("reference"), dict) for case in cases):  # an image set: where each image is
            shown["cases"] = [{**case, "reference": {**case["reference"],
                                                     "url": reference_image_url(reference_set.pk, case["reference"])}}
                              if isinstance(case.get("reference"), dict) else case for case in cases]
        return shown


class RunCreateSerializer(StrictSerializer):
    reference_set = serializers.UUIDField()
    model_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=2**31 - 1,
        help_text="Id of a model version of the set's plugin; none (the default) evaluates the project's current model.")


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.CharField()


class RunProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Cases whose job has finished.")
    failed = serializers.IntegerField(help_text="Cases whose job failed, was blocked or cancelled.")
    total = serializers.IntegerField()


class RunMetricsSerializer(serializers.Serializer):
    bleu = serializers.FloatField(allow_null=True, required=False, help_text="Corpus BLEU (sacrebleu) of the succeeded cases.")
    chrf = serializers.FloatField(allow_null=True, required=False, help_text="Corpus chrF (sacrebleu) of the succeeded cases.")
    bleu_tokenize = serializers.CharField(required=False, help_text="sacrebleu's tokenisation of BLEU: 13a, or zh / char "
                                                                     "for references in Chinese, Japanese or Korean.")
    mean_case_chrf = serializers.FloatField(allow_null=True, required=False)
    cases = serializers.IntegerField(required=False)
    succeeded = serializers.IntegerField(required=False)
    failed = serializers.IntegerField(required=False)
    model_versions = serializers.ListField(child=serializers.CharField(), required=False,
                                           help_text="The model versions that answered (the current one's name "
                                                     "for a run of the project's current model).")
    fid = serializers.FloatField(allow_null=True, required=False,
                                 help_text="Image runs: FID (torchmetrics) between the generated images and the references, "
                                           "on the features of ATELIER_EVALUATION_IMAGE_FEATURES; lower is closer. Null "
                                           "with fewer than 2 images a side (not_scored says why).")
    kid = serializers.FloatField(allow_null=True, required=False,
                                 help_text="Image runs: KID mean (unbiased: 0 for one distribution, even below for "
                                           "close sets; its scale follows the extractor's features).")
    kid_std = serializers.FloatField(allow_null=True, required=False,
                                     help_text="Image runs: the spread of KID over its subsets; null where every subset "
                                               "holds all images of both sides (not_scored says so).")
    kid_subset_size = serializers.IntegerField(allow_null=True, required=False)
    mean_similarity = serializers.FloatField(allow_null=True, required=False,
                                             help_text="Image runs: mean cosine similarity of each generated image's "
                                                       "features to its reference's.")
    feature_extractor = serializers.CharField(required=False, help_text="Image runs: the model the features came from.")
    scoring = serializers.CharField(required=False, help_text="Image runs: pending (a worker scores the images), done, "
                                                              "failed (see error), or none (no case answered).")
    not_scored = serializers.DictField(child=serializers.CharField(), required=False,
                                       help_text="Image runs: why FID, KID or KID's spread is null.")
    ranking_cases = serializers.IntegerField(required=False, help_text="recommender_copy runs with reference_items: the "
                                                                       "answered cases the ranking metrics are the mean of.")
    hit_rate = serializers.FloatField(allow_null=True, required=False, help_text=(
        "Mean hit rate@k: 1 for a case when one of its relevant items is among the first k recommended, else 0."))
    mrr = serializers.FloatField(allow_null=True, required=False, help_text=(
        "Mean reciprocal rank: 1 / the rank of a case's first relevant item among the first k (0 when none is)."))
    ndcg = serializers.FloatField(allow_null=True, required=False, help_text=(
        "Mean NDCG@k: DCG@k (sum of gain / log2(rank + 1)) over the DCG@k of the ideal order (scikit-learn's ndcg_score)."))
    retrieval_cases = serializers.IntegerField(required=False, help_text="chatbot runs with reference_sources: the "
                                                                         "answered cases the retrieval metrics are the mean of.")
    source_recall = serializers.FloatField(allow_null=True, required=False, help_text=(
        "Mean source recall@k: the expected documents among those the first k passages came from, over the expected."))
    source_precision = serializers.FloatField(allow_null=True, required=False, help_text=(
        "Mean source precision@k: the expected documents among those the first k passages came from, over those "
        "documents (0 when no passage was retrieved)."))


class CaseErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField(allow_blank=True)


class RankedItemSerializer(serializers.Serializer):
    id = serializers.CharField()
    gain = serializers.FloatField(help_text="Its gain in the case's reference_items; 0: not relevant.")


class CaseRankingSerializer(serializers.Serializer):
    k = serializers.IntegerField()
    ranked = RankedItemSerializer(many=True, help_text="The items the answer recommended, best first.")
    missed = serializers.ListField(child=serializers.CharField(), help_text="Relevant items not among the first k.")
    hit = serializers.FloatField()
    reciprocal_rank = serializers.FloatField()
    ndcg = serializers.FloatField()


class CitedSourceSerializer(serializers.Serializer):
    source_id = serializers.CharField()
    title = serializers.CharField(allow_blank=True, help_text="The title of its first passage.")
    expected = serializers.BooleanField(help_text="One of the case's reference_sources.")


class CaseRetrievalSerializer(serializers.Serializer):
    k = serializers.IntegerField()
    cited = CitedSourceSerializer(many=True, help_text="The documents the first k passages came from, in order.")
    missed = serializers.ListField(child=serializers.CharField(), help_text="Expected documents not among them.")
    recall = serializers.FloatField()
    precision = serializers.FloatField()


class CaseResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    job_id = serializers.UUIDField()
    status = serializers.CharField(help_text="pending (until the run is scored), succeeded or failed (the job failed, "
                                             "was blocked, or screening blocked its output, or the run was cancelled before it finished: see error).")
    output = serializers.CharField(allow_null=True, allow_blank=True)
    reference = serializers.CharField(allow_blank=True, allow_null=True, help_text="The case's reference when the run "
                                                                                    "started (null: none, only another kind).")
    chrf = serializers.FloatField(allow_null=True, help_text="The answer's chrF against the reference text (null without one).")
    reference_items = serializers.JSONField(required=False, help_text="recommender_copy: the case's relevant items "
                                                                      "when the run started.")
    reference_sources = serializers.ListField(child=serializers.CharField(), required=False,
                                              help_text="chatbot: the case's expected documents when the run started.")
    k = serializers.IntegerField(required=False, help_text="The case's own cut-off, when it states one.")
    input_sha256 = serializers.CharField(required=False, help_text=(
        "SHA-256 (hex) of the case's input and params as its job was asked them, as canonical JSON (keys sorted, no "
        "spaces, UTF-8), recorded when the run started: a comparison sees an input edited under the same reference. "
        "Absent in runs started before it was recorded."))
    ranking = CaseRankingSerializer(required=False, help_text="Once answered, a case with reference_items.")
    retrieval = CaseRetrievalSerializer(required=False, help_text="Once answered, a case with reference_sources.")
    error = CaseErrorSerializer(allow_null=True)
    similarity = serializers.FloatField(allow_null=True, required=False,
                                        help_text="Image runs: cosine similarity of the generated image's features to "
                                                  "the reference's (1: the same).")
    image_url = serializers.CharField(allow_null=True, required=False,
                                      help_text="Image runs: the generated image (with the same credentials).")
    reference_url = serializers.CharField(allow_null=True, required=False,
                                          help_text="Image runs: the reference image (with the same credentials).")


class WatchGateSerializer(serializers.Serializer):
    metric = serializers.CharField()
    max_drop = serializers.FloatField()
    drop = serializers.FloatField(allow_null=True, help_text="How much worse than the previous run (positive: worse).")
    run = serializers.FloatField(allow_null=True)
    to = serializers.FloatField(allow_null=True)
    better = serializers.CharField()
    passed = serializers.BooleanField()
    reason = serializers.CharField()
    set_changed = serializers.BooleanField()


class WatchVerdictSerializer(serializers.Serializer):
    """A scheduled run's verdict, once it ended (null for a run someone started, and while it goes)."""

    schedule = serializers.UUIDField(help_text="The watch that started the run.")
    outcome = serializers.ChoiceField(
        choices=["passed", "regressed", "failed", "baseline", "set_changed", "cancelled", "not_judged"],
        help_text="passed: every limit held against the watch's previous succeeded run; regressed: a limit failed; "
                  "failed: the run failed; baseline: the watch's first succeeded run; set_changed: the set was "
                  "changed since the previous run (not comparable); cancelled: not gated; not_judged: an error.")
    passed = serializers.BooleanField(allow_null=True, help_text="null where nothing was gated.")
    reason = serializers.CharField()
    max_drop = serializers.DictField(child=serializers.FloatField(), help_text="The watch's limits when it ended.")
    gates = WatchGateSerializer(many=True, help_text="Each limit, and the failed cases', as the evaluate command's.")
    failed_metrics = serializers.ListField(child=serializers.CharField())
    compared_to = serializers.UUIDField(allow_null=True, help_text="The run it was measured against.")
    judged_at = serializers.DateTimeField()


class RunSummarySerializer(serializers.ModelSerializer):
    plugin = serializers.CharField(source="plugin_id")
    reference_set_name = serializers.CharField(source="reference_set.name")
    model_version = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    schedule = serializers.UUIDField(source="schedule_id", read_only=True, allow_null=True,
                                     help_text="The watch that started the run (GET /api/v1/evaluation/schedules/{id}/); "
                                               "null for a run someone started.")
    watch = serializers.SerializerMethodField()
    # a plain string in the schema: a choice set would take the name of the jobs' status enum (StatusEnum)
    status = serializers.CharField(help_text="queued, running, succeeded (scored), failed (every case failed) or "
                                             "cancelled (stopped before every case finished; the cases answered are scored).")
    error = serializers.CharField(source="error_message")

    class Meta:
        model = EvaluationRun
        fields = ["id", "reference_set", "reference_set_name", "plugin", "model_version", "status", "progress", "metrics",
                  "error", "schedule", "watch", "created_at", "started_at", "finished_at"]

    @extend_schema_field(ModelVersionRefSerializer(allow_null=True))
    def get_model_version(self, run: EvaluationRun) -> dict | None:
        version = run.model_version
        return {"id": version.pk, "version": version.version} if version is not None else None

    @extend_schema_field(RunProgressSerializer)
    def get_progress(self, run: EvaluationRun) -> dict:
        return {"done": run.cases_done, "failed": run.cases_failed, "total": run.cases_total}

    @extend_schema_field(RunMetricsSerializer)
    def get_metrics(self, run: EvaluationRun) -> dict:
        return run.metrics or {}

    @extend_schema_field(WatchVerdictSerializer(allow_null=True))
    def get_watch(self, run: EvaluationRun) -> dict | None:
        return run.watch or None


class RunSerializer(RunSummarySerializer):
    results = serializers.SerializerMethodField()

    class Meta(RunSummarySerializer.Meta):
        fields = [*RunSummarySerializer.Meta.fields, "results"]

    @extend_schema_field(CaseResultSerializer(many=True))
    def get_results(self, run: EvaluationRun) -> list:
        results = run.results or []
        if not any(isinstance(case.get("reference"), dict) for case in results):
            return results
        shown = []
        for case in results:  # an image run: links to both images, downloads of this project only
            image = case.get("image")
            shown.append({**case, "reference_url": reference_image_url(run.reference_set_id, case.get("reference")),
                          "image_url": f"/api/v1/outputs/{image['output_id']}/files/{image['file_id']}/" if image else None})
        return shown


class CompareQuerySerializer(serializers.Serializer):
    """The query of ``GET /evaluation/runs/{id}/compare/`` (other parameters, such as the dashboard's ``project``,
    are left alone)."""

    to = serializers.UUIDField(help_text="The run to compare with (the baseline): another ended run of the same "
                                         "reference set.")
    limit = serializers.IntegerField(required=False, default=COMPARE_DEFAULT_LIMIT, min_value=1, max_value=COMPARE_MAX_LIMIT,
                                     help_text=f"Cases listed, worst regression first ({COMPARE_DEFAULT_LIMIT} unless "
                                               f"given, at most {COMPARE_MAX_LIMIT}).")
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1,
                                      help_text="Cases to skip: the next page starts at offset + limit (see cases.next).")


class MetricChangeSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="chrf, bleu, mean_case_chrf (text runs), with ndcg, hit_rate, mrr, "
                                           "source_recall, source_precision where either run has them; fid, kid, "
                                           "mean_similarity (images).")
    better = serializers.ChoiceField(choices=["higher", "lower"], help_text="Which way is better for this metric.")
    run = serializers.FloatField(allow_null=True, help_text="The run's figure.")
    to = serializers.FloatField(allow_null=True, help_text="The baseline's figure.")
    delta = serializers.FloatField(allow_null=True, help_text="run minus to; null where either has no figure.")
    change = serializers.ChoiceField(choices=["improved", "regressed", "unchanged"], allow_null=True,
                                     help_text="Read with better: regressed is a move the wrong way.")


class CaseChangeSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    change = serializers.ChoiceField(choices=["newly_failed", "scored", "both_failed", "fixed", "not_compared"],
                                     help_text="newly_failed: the run failed a case the baseline answered; fixed: the "
                                               "other way; scored: both answered (see delta); not_compared: the "
                                               "baseline had no such case (its set was changed between the runs).")
    delta = serializers.FloatField(allow_null=True, help_text="The case's score (chrF; an image's similarity) in the "
                                                              "run minus in the baseline; higher is better.")
    reference_changed = serializers.BooleanField(help_text="The two runs scored this case against other references.")
    input_changed = serializers.BooleanField(help_text="The two runs asked this case with another input or params "
                                                       "(their input_sha256 differ); false where either has none.")
    status = serializers.CharField()
    to_status = serializers.CharField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
    to_score = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_null=True, help_text="The run's error code for a failed case.")
    to_error = serializers.CharField(allow_null=True)
    output = serializers.CharField(allow_null=True, allow_blank=True, help_text="Text runs: the run's answer.")
    to_output = serializers.CharField(allow_null=True, allow_blank=True)
    job_id = serializers.UUIDField(allow_null=True)
    to_job_id = serializers.UUIDField(allow_null=True)


class CaseChangePageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Cases in all.")
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    next = serializers.CharField(allow_null=True, help_text="The next page's URL; null on the last.")
    results = CaseChangeSerializer(many=True, help_text="Worst regression first.")


class RunComparisonSerializer(serializers.Serializer):
    run = RunSummarySerializer()
    to = RunSummarySerializer()
    case_score = serializers.CharField(help_text="Where each case's score compared is in its result: chrf (text), "
                                                 "similarity (images), ranking.ndcg (a set of relevant items), "
                                                 "retrieval.recall (a set of expected sources).")
    set_changed = serializers.BooleanField(help_text="The reference set was changed between the runs: some cases "
                                                     "were scored against other references, asked with another input "
                                                     "or params, or only one run had them.")
    inputs_compared = serializers.BooleanField(help_text=(
        "Both runs recorded each case's input_sha256, so an input edited under the same reference counts in "
        "set_changed; false where either started before they were recorded (its cases compared by their references "
        "alone)."))
    metrics = MetricChangeSerializer(many=True)
    cases = CaseChangePageSerializer()


def comparison_data(compared, *, offset: int = 0, limit: int = COMPARE_DEFAULT_LIMIT, next_url=None) -> dict:
    """A ``comparison.Comparison`` as the API shows it (``RunComparisonSerializer``), its cases from ``offset``."""
    from atelier_platform.evaluation.comparison import primary_score, score_path

    page = compared.cases[offset:offset + limit]
    return {
        "run": RunSummarySerializer(compared.run).data, "to": RunSummarySerializer(compared.to).data,
        "case_score": score_path(primary_score(compared.run.plugin_id, compared.run.results or [])), "set_changed": compared.set_changed,
        "inputs_compared": compared.inputs_compared,
        "metrics": [change.as_dict() for change in compared.metrics],
        "cases": {"count": len(compared.cases), "offset": offset, "limit": limit,
                  "next": next_url if offset + limit < len(compared.cases) else None,
                  "results": [pair.as_dict() for pair in page]},
    }


# --- watches (scheduled runs) -------------------------------------------------------------------------------------

MAX_DROP_HELP = ("Each gated metric's largest allowed drop against the watch's previous succeeded run, as the evaluate "
                 "command's --max-drop: {\"chrf\": 1.5, \"bleu\": 2}; text runs: chrf, bleu, mean_case_chrf, ndcg, "
                 "hit_rate, mrr, source_recall, source_precision; images: fid, kid (a rise is worse), mean_similarity; "
                 "failed: how many more cases may fail (0 unless given).")
INTERVAL_HELP = f"Hours between runs, {MIN_INTERVAL_HOURS} to {MAX_INTERVAL_HOURS} (30 days)."
VERSION_HELP = ("Id of a model version of the set's plugin; null (the default): the version the project pins when each "
                "run starts (the plugin's default model if none).")
NEXT_RUN_HELP = ("When the next run starts (the first beat tick at or after it): ISO 8601 with its offset "
                 "(2026-12-01T03:00:00Z, or +08:00; without one it is a 400, not read as UTC); at most 30 days ahead, "
                 f"and at most {int(NEXT_RUN_PAST_LEEWAY.total_seconds() // 60)} minutes past (then due at once; "
                 "earlier is a 400; on a change, the watch's own value sent back is no change). On creation, by "
                 "default at once: the first run is the baseline the next is measured against.")


class ScheduleCreateSerializer(StrictSerializer):
    reference_set = serializers.UUIDField(help_text="The set to watch (one watch per set).")
    model_version = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                             max_value=2**31 - 1, help_text=VERSION_HELP)
    interval_hours = serializers.IntegerField(min_value=MIN_INTERVAL_HOURS, max_value=MAX_INTERVAL_HOURS,
                                              help_text=INTERVAL_HELP)
    max_drop = serializers.JSONField(help_text=MAX_DROP_HELP)
    enabled = serializers.BooleanField(required=False, default=True)
    next_run_at = InstantInputField(required=False, help_text=NEXT_RUN_HELP)


class ScheduleUpdateSerializer(StrictSerializer):
    model_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1,
                                             help_text=VERSION_HELP)
    interval_hours = serializers.IntegerField(required=False, min_value=MIN_INTERVAL_HOURS,
                                              max_value=MAX_INTERVAL_HOURS, help_text=INTERVAL_HELP)
    max_drop = serializers.JSONField(required=False, help_text=MAX_DROP_HELP + " Replaces every limit.")
    enabled = serializers.BooleanField(required=False, help_text="false: no run starts until it is true again (then "
                                                                 "one, if its time passed meanwhile).")
    next_run_at = InstantInputField(required=False, help_text=NEXT_RUN_HELP)


class ScheduleLastRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    outcome = serializers.CharField(allow_null=True, help_text="The verdict's outcome; null while it goes.")
    failed_metrics = serializers.ListField(child=serializers.CharField())
    compared_to = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    url = serializers.CharField()


class ScheduleSkipSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    code = serializers.CharField(help_text="previous_run_going (the watch's previous run still went), start_failed (an "
                                           "error, logged on the server: still due, tried at the next tick), or the "
                                           "code of the service's refusal (evaluation_runs_busy, quota_exceeded, ...).")
    message = serializers.CharField()


class ScheduleSerializer(serializers.ModelSerializer):
    reference_set_name = serializers.CharField(source="reference_set.name")
    plugin = serializers.CharField(source="reference_set.plugin_id")
    model_version = serializers.SerializerMethodField()
    max_drop = serializers.DictField(child=serializers.FloatField())
    last_run = serializers.SerializerMethodField()
    last_skip = serializers.SerializerMethodField()
    failing_since = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="The first due start that failed (refused, or an error) since the watch last started a run: the one "
                  "evaluation_watch.failed_to_start announced; its last_skip says the latest reason. null when the last "
                  "start worked; cleared by the next run it starts or by a change of the watch.")

    class Meta:
        model = EvaluationSchedule
        fields = ["id", "reference_set", "reference_set_name", "plugin", "model_version", "interval_hours", "max_drop",
                  "enabled", "next_run_at", "last_run", "last_skip", "failing_since", "created_at", "updated_at"]

    @extend_schema_field(ModelVersionRefSerializer(allow_null=True, help_text="null: the version pinned at each run."))
    def get_model_version(self, schedule: EvaluationSchedule) -> dict | None:
        version = schedule.model_version
        return {"id": version.pk, "version": version.version} if version is not None else None

    @extend_schema_field(ScheduleLastRunSerializer(allow_null=True, help_text="The run the watch started last."))
    def get_last_run(self, schedule: EvaluationSchedule) -> dict | None:
        run = schedule.last_run
        if run is None:
            return None
        verdict = run.watch or {}
        return {"id": str(run.pk), "status": run.status, "outcome": verdict.get("outcome"),
                "failed_metrics": verdict.get("failed_metrics") or [], "compared_to": verdict.get("compared_to"),
                "created_at": run.created_at, "url": f"/api/v1/evaluation/runs/{run.pk}/"}

    @extend_schema_field(ScheduleSkipSerializer(allow_null=True, help_text=(
        "The last time it was due and started no run, and why; cleared by the next run it starts.")))
    def get_last_skip(self, schedule: EvaluationSchedule) -> dict | None:
        if schedule.last_skipped_at is None:
            return None
        return {"at": schedule.last_skipped_at, "code": schedule.last_skip_code, "message": schedule.last_skip_message}
