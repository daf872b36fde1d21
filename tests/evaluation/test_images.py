"""Image evaluation: reference images checked and stored as files, runs of the real image plugin on a tiny pipeline
answered by the worker's job runner, then scored by the worker's scoring task (FID, KID, each case's similarity)
with a tiny feature extractor."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from atelier_platform.celery_app import QUEUE_CPU, SCORE_EVALUATION_TASK
from atelier_platform.evaluation import images, services
from atelier_platform.evaluation.models import EvaluationRun, ReferenceImage, ReferenceSet, RunStatus
from atelier_platform.jobs.errors import InvalidJobInput
from atelier_platform.jobs.models import Job
from tests.evaluation.conftest import image_case, png_bytes
from tests.evaluation.test_runs import run_all

pytestmark = pytest.mark.django_db(transaction=True)

PROMPTS = ["a red cat on a mat", "a blue dog in the park", "an old house by the sea"]


def image_set(project, pictures=None, name="pictures", prompts=PROMPTS):
    pictures = pictures if pictures is not None else [png_bytes(i) for i in range(len(prompts))]
    cases = [image_case(prompt, picture) for prompt, picture in zip(prompts, pictures)]
    return services.create_reference_set(project, plugin_id="image", name=name, cases=cases, actor="test")


def score(run) -> EvaluationRun:
    """What a CPU worker does with the scoring message."""
    from atelier_workers.evaluation_tasks import score_evaluation

    score_evaluation.apply(args=[str(run.pk)])
    return EvaluationRun.objects.get(pk=run.pk)


def scoring_messages(sent_messages) -> list:
    return [m for m in sent_messages if m["task"] == SCORE_EVALUATION_TASK]


class TestReferenceImages:
    def test_images_are_stored_as_files_once_each_and_go_with_their_set(self, image_project):
        same = png_bytes(1)
        reference_set = image_set(image_project, [same, same, png_bytes(2, kind="JPEG")])
        stored = list(ReferenceImage.objects.filter(reference_set=reference_set))
        assert len(stored) == 2  # one file per distinct image
        first = reference_set.cases[0]["reference"]
        assert first == {"image": stored[0].sha256 if stored[0].media_type == "image/png" else stored[1].sha256,
                         "media_type": "image/png", "width": 32, "height": 32}
        assert reference_set.cases[2]["reference"]["media_type"] == "image/jpeg"
        names = [image.file.name for image in stored]
        assert all(default_storage.exists(name) for name in names)
        assert all(name.startswith(f"evaluation/{image_project.pk}/{reference_set.pk}/") for name in names)
        assert default_storage.open(names[0]).read() in (same, png_bytes(2, kind="JPEG"))
        services.delete_reference_set(reference_set, actor="test")
        assert not ReferenceImage.objects.exists()
        assert not any(default_storage.exists(name) for name in names)

    def test_an_image_in_many_cases_is_decoded_once(self, image_project, monkeypatch):
        """Each case decoded its image again: 500 cases of one 4096x4096 picture (a ZIP of 60 KB) held a web process
        for two minutes."""
        decoded = []
        check_image = images.check_image
        monkeypatch.setattr(images, "check_image", lambda data, budget=None: decoded.append(data) or check_image(data, budget))
        same = png_bytes(1)
        reference_set = image_set(image_project, [same, png_bytes(2), same, same], prompts=["a", "b", "c", "d"])
        assert sorted(decoded) == sorted([same, png_bytes(2)])
        assert [case["reference"]["image"] for case in reference_set.cases].count(reference_set.cases[0]["reference"]["image"]) == 3

    def test_the_new_images_of_one_request_decode_at_most_a_budget_of_pixels_together(self, image_project, monkeypatch):
        """500 distinct 4096x4096 images took two minutes to check in a web request: past the budget an image is
        refused from its header, undecoded, and nothing is saved; the set's stored images are not counted again."""
        monkeypatch.setattr(images, "MAX_SET_PIXELS", 2 * 32 * 32)  # two of these 32x32 pictures
        with pytest.raises(InvalidJobInput) as refused:
            image_set(image_project, [png_bytes(i) for i in range(4)], prompts=["a", "b", "c", "d"])
        assert set(refused.value.details) == {"cases.2.reference", "cases.3.reference"}
        assert "more than 2,048 pixels together" in refused.value.details["cases.2.reference"][0]
        assert [error["type"] for error in refused.value.field_errors] == ["evaluation.image_set_too_many_pixels"] * 2
        assert not ReferenceSet.objects.exists() and not ReferenceImage.objects.exists()
        reference_set = image_set(image_project, [png_bytes(0), png_bytes(1)], prompts=["a", "b"])
        cases = reference_set.cases + [image_case("c", png_bytes(2)), image_case("d", png_bytes(3))]
        services.update_reference_set(reference_set, actor="test", cases=cases)  # two new images: within the budget
        assert ReferenceSet.objects.get().images.count() == 4

    def test_a_data_url_is_taken(self, image_project):
        case = image_case("a cat", png_bytes(3))
        case["reference"] = "data:image/png;base64," + case["reference"]
        reference_set = services.create_reference_set(image_project, plugin_id="image", name="n", cases=[case],
                                                      actor="test")
        assert reference_set.images.get().sha256 == reference_set.cases[0]["reference"]["image"]

    def test_bad_images_are_refused_naming_each_case_and_nothing_is_saved(self, image_project, monkeypatch):
        import io

        from PIL import Image

        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, format="GIF")
        monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 40 * 40)
        cases = [image_case("fine", png_bytes(1)),
                 {"input": {"prompt": "not base64"}, "reference": "%%% not base64 %%%"},
                 {"input": {"prompt": "text"}, "reference": base64.b64encode(b"just some text").decode()},
                 {"input": {"prompt": "a gif"}, "reference": base64.b64encode(gif.getvalue()).decode()},
                 image_case("too big", png_bytes(2, size=64)),
                 {"input": {"prompt": "cut"}, "reference": base64.b64encode(png_bytes(4)[:60]).decode()},
                 {"input": {"prompt": "none"}, "reference": 7},
                 {"input": {"prompt": "unknown sha"}, "reference": {"image": "0" * 64}}]
        with pytest.raises(InvalidJobInput) as refused:
            services.create_reference_set(image_project, plugin_id="image", name="n", cases=cases, actor="test")
        details = refused.value.details
        assert set(details) == {f"cases.{i}.reference" for i in range(1, 8)}
        assert details["cases.1.reference"] == ["Not valid base64."]
        assert "PNG or JPEG" in details["cases.2.reference"][0] and "GIF" in details["cases.3.reference"][0]
        assert "64x64" in details["cases.4.reference"][0]
        assert "PNG or JPEG" in details["cases.5.reference"][0]
        assert not ReferenceSet.objects.exists() and not ReferenceImage.objects.exists()

    def test_new_cases_keep_the_images_still_named_and_those_a_going_run_needs(self, image_project):
        reference_set = image_set(image_project)
        kept = reference_set.cases[0]
        first_files = {image.sha256: image.file.name for image in reference_set.images.all()}
        run = services.start_run(image_project, reference_set, actor="test")
        # the first case sent back as the API shows it (its image named, with its url), and a new image
        services.update_reference_set(reference_set, actor="test", cases=[
            {**kept, "reference": {**kept["reference"], "url": "/ignored/"}}, image_case("new", png_bytes(9))])
        assert reference_set.cases[0]["reference"] == kept["reference"]
        assert reference_set.images.count() == 4  # the run going still needs the two dropped ones
        services.cancel_run(run, actor="test")
        EvaluationRun.objects.filter(pk=run.pk).update(scoring_sent_at=None)  # scored (or given up)
        services.update_reference_set(reference_set, actor="test", cases=reference_set.cases)
        assert set(reference_set.images.values_list("sha256", flat=True)) == images.referenced_shas(reference_set.cases)
        dropped = [name for sha, name in first_files.items() if sha != kept["reference"]["image"]]
        assert len(dropped) == 2 and not any(default_storage.exists(name) for name in dropped)

    def test_an_image_named_by_its_sha256_keeps_what_the_set_holds_of_it_whatever_the_request_says(self, image_project):
        """What a case sent back said of its image was stored as it came: a NUL character in it failed the save
        (a 500), and a changed media type or size passed for the image's."""
        reference_set = image_set(image_project, prompts=PROMPTS[:1])
        kept = reference_set.cases[0]["reference"]
        for said in ({"media_type": "\x00"}, {"media_type": "text/html", "width": "x" * 1000, "height": {"a": [1]}}):
            case = {"input": {"prompt": "again"}, "reference": {"image": kept["image"], **said}}
            services.update_reference_set(reference_set, actor="test", cases=[case])
            reference_set.refresh_from_db()
            assert reference_set.cases[0]["reference"] == kept


class TestRuns:
    def test_a_run_is_answered_then_scored_by_a_worker_with_fid_kid_and_each_cases_similarity(
            self, image_project, sent_messages):
        reference_set = image_set(image_project)
        run = services.start_run(image_project, reference_set, actor="test")
        jobs = list(Job.objects.filter(evaluation_case__run=run).order_by("evaluation_case__index"))
        assert [job.input["seed"] for job in jobs] == [0, 0, 0]  # the same randomness for every version
        run = run_all(run)
        # the jobs are done, the images wait for a worker: running, scores pending, the task sent to the cpu queue
        assert run.status == RunStatus.RUNNING and run.cases_done == 3 and run.finished_at is None
        assert run.metrics["scoring"] == "pending" and run.metrics["fid"] is None
        [message] = scoring_messages(sent_messages)
        assert message["args"] == [str(run.pk)] and message["queue"] == QUEUE_CPU
        assert all(case["image"] and case["status"] == "succeeded" for case in run.results)
        assert services.sweep_runs() == 0 and len(scoring_messages(sent_messages)) == 1  # not sent twice

        run = score(run)
        assert run.status == RunStatus.SUCCEEDED and run.finished_at is not None and run.scoring_sent_at is None
        metrics = run.metrics
        assert metrics["scoring"] == "done" and isinstance(metrics["fid"], float) and metrics["fid"] >= 0
        assert isinstance(metrics["kid"], float) and metrics["kid_subset_size"] == 3
        assert metrics["feature_extractor"] == "demo/image-features" and metrics["features"] == 16
        assert metrics["images"] == {"generated": 3, "references": 3} and list(metrics["not_scored"]) == ["kid_std"]
        assert metrics["kid_std"] is None  # subsets of all 3 images a side are all one draw: no spread to report
        similarities = [case["similarity"] for case in run.results]
        assert all(-1 <= s <= 1 for s in similarities)
        assert metrics["mean_similarity"] == pytest.approx(sum(similarities) / 3, abs=1e-3)

        # delivered again (the sweeper, a redelivery): nothing changes
        before = (run.metrics, run.results, run.finished_at)
        run = score(run)
        assert (run.metrics, run.results, run.finished_at) == before

    def test_the_same_run_again_scores_the_same(self, image_project):
        reference_set = image_set(image_project)
        first = score(run_all(services.start_run(image_project, reference_set, actor="test")))
        second = score(run_all(services.start_run(image_project, reference_set, actor="test")))
        assert second.metrics["fid"] == first.metrics["fid"] and second.metrics["kid"] == first.metrics["kid"]
        assert [c["similarity"] for c in second.results] == [c["similarity"] for c in first.results]

    def test_a_generated_image_scored_against_itself_is_as_similar_as_can_be(self, image_project):
        reference_set = image_set(image_project, prompts=PROMPTS[:2])
        run = run_all(services.start_run(image_project, reference_set, actor="test"))
        from atelier_platform.jobs.models import OutputFile

        made = [OutputFile.objects.get(pk=case["image"]["file_id"]).file.read() for case in run.results]
        own = image_set(image_project, made, name="own answers", prompts=PROMPTS[:2])
        again = score(run_all(services.start_run(image_project, own, actor="test")))
        assert [case["similarity"] for case in again.results] == [1.0, 1.0]
        assert again.metrics["fid"] == pytest.approx(0, abs=1e-3)

    def test_one_case_has_a_similarity_but_no_fid_or_kid_and_says_why(self, image_project):
        run = score(run_all(services.start_run(image_project, image_set(image_project, prompts=PROMPTS[:1]),
                                               actor="test")))
        assert run.status == RunStatus.SUCCEEDED and run.results[0]["similarity"] is not None
        assert run.metrics["fid"] is None and run.metrics["kid"] is None
        assert "at least 2 images on each side" in run.metrics["not_scored"]["fid"]

    def test_a_failed_case_is_left_out_of_the_generated_side(self, image_project):
        from atelier_platform.jobs import lifecycle

        run = services.start_run(image_project, image_set(image_project), actor="test")
        lifecycle.cancel_job(Job.objects.get(evaluation_case__run=run, evaluation_case__index=1))
        run = score(run_all(run))
        assert run.status == RunStatus.SUCCEEDED and run.metrics["succeeded"] == 2 and run.metrics["failed"] == 1
        assert run.results[1]["similarity"] is None and run.results[1]["error"]["code"] == "cancelled"
        assert run.metrics["images"] == {"generated": 2, "references": 3} and run.metrics["fid"] is not None

    def test_a_run_whose_every_case_failed_fails_without_a_worker(self, image_project, sent_messages):
        from atelier_platform.catalog.models import ModelVersion

        missing = ModelVersion.objects.create(plugin_id="image", version="gone", model_dir="image/not-there")
        run = run_all(services.start_run(image_project, image_set(image_project), model_version_id=missing.pk,
                                         actor="test"))
        assert run.status == RunStatus.FAILED and run.metrics["scoring"] == "none" and run.finished_at
        assert not scoring_messages(sent_messages)

    def test_a_cancelled_run_has_its_answered_cases_scored_and_stays_cancelled(self, image_project, sent_messages):
        from atelier_workers.runtime import JobRunner, ModelCache

        from atelier_platform.catalog.registry import get_registry

        cases = [image_case(prompt, png_bytes(i)) for i, prompt in enumerate(PROMPTS)]
        cases[2]["input"]["steps"] = 3  # not in the first two's batch
        reference_set = services.create_reference_set(image_project, plugin_id="image", name="n", cases=cases,
                                                      actor="test")
        run = services.start_run(image_project, reference_set, actor="test")
        runner = JobRunner(get_registry(), ModelCache("cpu"))
        for job in Job.objects.filter(evaluation_case__run=run, evaluation_case__index__lt=2):
            runner.run(str(job.pk))
        run = services.cancel_run(EvaluationRun.objects.get(pk=run.pk), actor="test")
        assert run.status == RunStatus.CANCELLED and run.metrics["scoring"] == "pending"
        assert len(scoring_messages(sent_messages)) == 1
        run = score(run)
        assert run.status == RunStatus.CANCELLED and run.metrics["scoring"] == "done"
        assert [case["similarity"] is not None for case in run.results] == [True, True, False]
        assert run.metrics["fid"] is not None

    def test_a_run_cancelled_while_its_images_are_scored_is_scored_once(self, image_project, sent_messages):
        run = run_all(services.start_run(image_project, image_set(image_project), actor="test"))
        run = services.cancel_run(run, actor="test")
        assert run.status == RunStatus.CANCELLED and len(scoring_messages(sent_messages)) == 1
        run = score(run)
        assert run.status == RunStatus.CANCELLED and run.metrics["succeeded"] == 3 and run.metrics["fid"] is not None


class TestScoringFailures:
    def test_no_feature_extractor_fails_the_run_saying_what_to_set(self, image_project, monkeypatch, tmp_path):
        from atelier_platform.config import get_config

        run = run_all(services.start_run(image_project, image_set(image_project), actor="test"))
        monkeypatch.setattr(type(get_config()), "resolved_image_features_dir", property(lambda self: tmp_path / "none"))
        run = score(run)
        assert run.status == RunStatus.FAILED and run.finished_at is not None and run.metrics["scoring"] == "failed"
        assert run.error_message.startswith("Scoring failed:") and "ATELIER_EVALUATION_IMAGE_FEATURES" in run.error_message

    def test_a_passing_failure_is_retried_then_scored(self, image_project, monkeypatch):
        from atelier_plugins.image import features

        real, calls = features.score, []

        def flaky(*args):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("out of memory, for once")
            return real(*args)

        monkeypatch.setattr(features, "score", flaky)
        run = score(run_all(services.start_run(image_project, image_set(image_project), actor="test")))
        assert len(calls) == 2 and run.status == RunStatus.SUCCEEDED and run.metrics["fid"] is not None

    def test_a_failure_that_lasts_fails_the_run_after_the_retries(self, image_project, monkeypatch):
        from atelier_plugins.image import features
        from atelier_workers.evaluation_tasks import MAX_RETRIES

        calls = []

        def broken(*args):
            calls.append(1)
            raise RuntimeError("the extractor crashed")

        monkeypatch.setattr(features, "score", broken)
        run = score(run_all(services.start_run(image_project, image_set(image_project), actor="test")))
        assert len(calls) == MAX_RETRIES + 1
        assert run.status == RunStatus.FAILED and "RuntimeError: the extractor crashed" in run.error_message

    def test_a_lost_scoring_message_is_sent_again_then_the_run_fails_rather_than_running_for_ever(
            self, image_project, sent_messages):
        run = run_all(services.start_run(image_project, image_set(image_project), actor="test"))
        assert len(scoring_messages(sent_messages)) == 1
        assert services.resend_overdue_scoring() == 0  # not overdue yet
        for sends in (2, 3):
            EvaluationRun.objects.filter(pk=run.pk).update(scoring_sent_at=timezone.now() - timedelta(hours=1))
            assert services.sweep_runs() == 0
            assert len(scoring_messages(sent_messages)) == sends
        EvaluationRun.objects.filter(pk=run.pk).update(scoring_sent_at=timezone.now() - timedelta(hours=1))
        services.sweep_runs()
        run = EvaluationRun.objects.get(pk=run.pk)
        assert run.status == RunStatus.FAILED and "never finished" in run.error_message
        assert len(scoring_messages(sent_messages)) == 3
        assert score(run).status == RunStatus.FAILED  # a late delivery changes nothing
