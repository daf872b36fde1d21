"""A reference set's page: its runs newest first with the model that answered each and the set's primary figures, the
trend of its primary metric across its succeeded runs (a line per model version, drawn on the server), which version
is pinned now; two runs ticked open the run page's comparison; owners evaluate and pin from a run's row. Members
read it; another project's set is not found."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.evaluation.models import EvaluationRun, ReferenceSet, RunStatus
from atelier_platform.jobs.models import Job
from atelier_platform.moderation.models import AuditEvent

pytestmark = pytest.mark.django_db

CASES = [{"input": {"messages": [{"role": "user", "content": "Where is my parcel?"}]}, "params": {},
          "reference": "On its way."}] * 2
START = timezone.now() - timedelta(days=30)


@pytest.fixture
def chatbot(project, empty_plugin_registry):
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)


@pytest.fixture
def text_set(project, chatbot):
    return ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="Support questions", cases=CASES)


@pytest.fixture
def versions():
    return {name: ModelVersion.objects.create(plugin_id="chatbot", version=name, model_dir=f"chat/{name}")
            for name in ("v2", "v3")}


def run_of(project, reference_set, day: int, *, version=None, status=RunStatus.SUCCEEDED, answered_by="v1", **figures):
    """A run started ``day`` days after START (its figures as its metrics), scored unless it is going."""
    finished = status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
    run = EvaluationRun.objects.create(
        project=project, reference_set=reference_set, plugin_id=reference_set.plugin_id, model_version=version,
        status=status, cases_total=2, cases_done=2 if finished else 1,
        finished_at=START + timedelta(days=day, minutes=5) if finished else None,
        metrics={"cases": 2, "succeeded": 2, "failed": 0, "model_versions": [version.version if version else answered_by],
                 **figures} if finished else {})
    EvaluationRun.objects.filter(pk=run.pk).update(created_at=START + timedelta(days=day))  # (auto_now_add)
    run.refresh_from_db()
    return run


def rows(page: str) -> list[str]:
    """The run rows' ids, in the page's order."""
    return re.findall(r'<tr data-run="([0-9a-f-]{36})" data-series', page)


def row(page: str, run) -> str:
    found = re.search(rf'<tr data-run="{run.pk}" data-series.*?</tr>', page, re.S)
    assert found, f"no row for {run.pk}"
    return found.group(0)


def chart_points(page: str) -> list[tuple[float, str, str, float]]:
    """The trend's points as drawn: (x, series, run id, value), left to right."""
    svg = re.search(r'<svg class="chart-svg trend-chart".*?</svg>', page, re.S).group(0)
    points = []
    for series, group in re.findall(r'<g class="trend-series[^"]*" data-series="([^"]+)">(.*?)</g>', svg, re.S):
        for cx, run_id, value in re.findall(r'<circle class="trend-point" cx="([\d.]+)" cy="[\d.]+" r="\d" fill="#[0-9a-f]+" '
                                            r'data-run="([0-9a-f-]+)" data-value="([-\d.e]+)"', group):
            points.append((float(cx), series, run_id, float(value)))
    return sorted(points)


def test_a_text_sets_runs_newest_first_with_their_figures_and_a_trend_a_line_per_version(
        project, text_set, versions, signed_in):
    v2, v3 = versions["v2"], versions["v3"]
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v3)
    default = run_of(project, text_set, 1, answered_by="default", chrf=31.25, bleu=8.0)
    first_v2 = run_of(project, text_set, 2, version=v2, chrf=40.0, bleu=12.5)
    first_v3 = run_of(project, text_set, 3, version=v3, chrf=55.5, bleu=20.0)
    failed = run_of(project, text_set, 4, version=v2, status=RunStatus.FAILED)
    second_v2 = run_of(project, text_set, 5, version=v2, chrf=44.0, bleu=13.0)
    # a run of "the current model" answered by v3 counts for v3, not for whatever is current when the page is read
    current_v3 = run_of(project, text_set, 6, answered_by="v3", chrf=57.0, bleu=21.0)
    going = run_of(project, text_set, 7, version=v2, status=RunStatus.RUNNING)

    response = signed_in(project, "owner").get(f"/evaluation/sets/{text_set.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'Support questions <span class="muted small">· Customer-service chatbot · 2 cases</span>', page)
    assert rows(page) == [str(r.pk) for r in (going, current_v3, second_v2, failed, first_v3, first_v2, default)]
    assert "<th>chrF</th><th>BLEU</th>" in page
    assert 'class="mono figure-chrf">44.0<' in row(page, second_v2) and 'class="mono figure-bleu">13.0<' in row(page, second_v2)
    assert "v2 · chat/v2" in row(page, second_v2) and 'data-run-status="running"' in row(page, going)
    assert "1 of 2 cases" in row(page, going) and 'data-run-status="failed"' in row(page, failed)
    assert "current model: v3" in row(page, current_v3)
    assert "current model: the plugin&#x27;s default model (not pinned)" in row(page, default)
    assert f'href="/evaluation/runs/{first_v2.pk}/"' in row(page, first_v2)
    # v3 is pinned now: its runs say so, the others do not
    for pinned in (first_v3, current_v3):
        assert "pinned-chip" in row(page, pinned) and "data-pinned" in row(page, pinned)
    assert "pinned-chip" not in row(page, second_v2) and "pinned-chip" not in row(page, default)
    assert "The project uses v3 · chat/v3 now." in page

    # the trend: chrF of the succeeded runs only, oldest on the left, a line per model that answered
    points = chart_points(page)
    assert [p[2] for p in points] == [str(r.pk) for r in (default, first_v2, first_v3, second_v2, current_v3)]
    assert [p[3] for p in points] == [31.25, 40.0, 55.5, 44.0, 57.0]
    assert {p[2]: p[1] for p in points} == {str(default.pk): "default", str(first_v2.pk): f"v{v2.pk}",
                                            str(second_v2.pk): f"v{v2.pk}", str(first_v3.pk): f"v{v3.pk}",
                                            str(current_v3.pk): f"v{v3.pk}"}
    assert 'data-metric="chrf" data-better="higher"' in page
    # a higher chrF is drawn higher (a smaller y)
    ys = dict(re.findall(r'cy="([\d.]+)" r="\d" fill="#[0-9a-f]+" data-run="([0-9a-f-]+)"', page)[i][::-1]
              for i in range(5))
    assert float(ys[str(current_v3.pk)]) < float(ys[str(first_v2.pk)]) < float(ys[str(default.pk)])
    # each line joins its runs in order; the pinned one is marked, in the legend too
    v2_line = re.search(rf'data-series="v{v2.pk}"><polyline points="([^"]+)"', page).group(1).split()
    assert [float(xy.split(",")[0]) for xy in v2_line] == [p[0] for p in points if p[1] == f"v{v2.pk}"]
    assert re.search(rf'<g class="trend-series pinned" data-series="v{v3.pk}">', page)
    assert re.search(rf'<span data-series="v{v3.pk}" class="pinned">.*?v3 · chat/v3 <span class="chip">pinned', page)
    # accessible: the SVG is named and described, and its figures are in a table
    assert 'role="img" aria-labelledby="trend-title trend-desc"' in page
    assert "chrF of each succeeded run, oldest to newest, a line per model version</title>" in page
    assert re.search(r"<desc id=\"trend-desc\">5 runs from .*? to .*?\. Higher is better\.", page)
    table = re.search(r'<details class="small" id="trend-figures">.*?</details>', page, re.S).group(0)
    assert re.findall(r'<tr data-run="([0-9a-f-]+)">', table) == [p[2] for p in points]
    assert "<td>v2 · chat/v2</td><td class=\"mono\">44.0</td>" in table


def test_a_ranking_set_is_summed_up_and_charted_by_ndcg(project, empty_plugin_registry, signed_in):
    from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

    empty_plugin_registry.register(RecommenderCopyPlugin)
    set_plugin_enabled(project, "recommender_copy", True)
    ranking = ReferenceSet.objects.create(project=project, plugin_id="recommender_copy", name="Picks", cases=[])
    ranking_figures = {"ranking_cases": 2, "chrf": None, "bleu": None}
    older = run_of(project, ranking, 1, ndcg=0.5123, hit_rate=0.5, mrr=0.5, **ranking_figures)
    newer = run_of(project, ranking, 2, ndcg=0.8, hit_rate=1.0, mrr=0.75, **ranking_figures)
    page = signed_in(project, "viewer").get(f"/evaluation/sets/{ranking.pk}/").content.decode()
    assert "<th>NDCG@k</th><th>Hit rate@k</th>" in page and "<th>chrF</th>" not in page
    assert 'class="mono figure-ndcg">0.512<' in row(page, older) and 'class="mono figure-hit_rate">1.000<' in row(page, newer)
    assert 'data-metric="ndcg" data-better="higher"' in page and "NDCG@k over time" in page
    assert [(p[2], p[3]) for p in chart_points(page)] == [(str(older.pk), 0.5123), (str(newer.pk), 0.8)]


def test_an_image_set_is_summed_up_by_fid_and_similarity_and_charted_by_similarity(project, empty_plugin_registry,
                                                                                   signed_in):
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    set_plugin_enabled(project, "image", True)
    images = ReferenceSet.objects.create(project=project, plugin_id="image", name="Digits", cases=[])
    one = run_of(project, images, 1, fid=120.4567, kid=0.01, kid_std=0.002, mean_similarity=0.61)
    two = run_of(project, images, 2, fid=None, mean_similarity=0.7)  # FID needs 2 images a side: null, still charted
    page = signed_in(project, "editor").get(f"/evaluation/sets/{images.pk}/").content.decode()
    assert "<th>FID</th><th>Mean similarity</th>" in page and "Text to image" in page
    assert 'class="mono figure-fid">120.46<' in row(page, one) and 'class="mono figure-fid">—<' in row(page, two)
    assert 'class="mono figure-mean_similarity">0.700<' in row(page, two)
    assert 'data-metric="mean_similarity" data-better="higher"' in page
    assert [(p[2], p[3]) for p in chart_points(page)] == [(str(one.pk), 0.61), (str(two.pk), 0.7)]


def test_a_set_without_a_scored_run_says_the_trend_starts_with_the_first(project, text_set, signed_in):
    run_of(project, text_set, 1, status=RunStatus.QUEUED)
    page = signed_in(project, "viewer").get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert 'id="trend-empty"' in page and "<svg" not in page
    empty = ReferenceSet.objects.create(project=project, plugin_id="chatbot", name="New", cases=CASES)
    page = signed_in(project, "viewer").get(f"/evaluation/sets/{empty.pk}/").content.decode()
    assert "No runs of this reference set yet." in page


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_members_read_the_page_but_only_owners_evaluate_or_pin(project, text_set, versions, signed_in, role):
    run = run_of(project, text_set, 1, version=versions["v2"], chrf=40.0, bleu=10.0)
    client = signed_in(project, role)
    page = client.get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert str(run.pk) in page and "40.0" in page
    assert 'id="evaluate-form"' not in page and "evaluate-again" not in page and "pin-version" not in page
    assert 'name="once"' not in page
    owner_page = signed_in(project, "owner").get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert 'id="evaluate-form"' in owner_page and "evaluate-again" in row(owner_page, run) and "pin-version" in row(owner_page, run)
    once = re.search(r'name="once" value="([0-9a-f]{32})"', owner_page).group(1)
    for action, form in (("evaluate", {"once": once, "model_version": ""}), ("pin", {"model_version": versions["v2"].pk})):
        assert client.post(f"/evaluation/sets/{text_set.pk}/{action}/", form).status_code == 403
    assert EvaluationRun.objects.count() == 1 and not Job.objects.exists()
    assert ProjectPlugin.objects.get(project=project, plugin_id="chatbot").model_version is None


def test_another_projects_set_is_not_found(project, other_project, text_set, signed_in, empty_plugin_registry):
    theirs = ReferenceSet.objects.create(project=other_project, plugin_id="chatbot", name="Their secret set", cases=CASES)
    their_run = run_of(other_project, theirs, 1, chrf=99.0, bleu=99.0)
    client = signed_in(project, "owner")
    for response in (client.get(f"/evaluation/sets/{theirs.pk}/"),
                     client.get(f"/evaluation/sets/{theirs.pk}/compare/", {"run": [their_run.pk, their_run.pk]}),
                     client.post(f"/evaluation/sets/{theirs.pk}/evaluate/", {"once": "a" * 32}),
                     client.post(f"/evaluation/sets/{theirs.pk}/pin/", {"model_version": "1"})):
        assert response.status_code == 404 and "Their secret set" not in response.content.decode()
    assert EvaluationRun.objects.count() == 1
    # nor is their run compared with one of ours
    ours = run_of(project, text_set, 1, chrf=10.0, bleu=1.0)
    response = client.get(f"/evaluation/sets/{text_set.pk}/compare/", {"run": [ours.pk, their_run.pk]})
    assert response.status_code == 400 and "Tick two runs of this reference set to compare them." in response.content.decode()


def test_two_runs_ticked_open_the_run_pages_comparison_older_first(project, text_set, versions, signed_in):
    older = run_of(project, text_set, 1, chrf=40.0, bleu=10.0)
    newer = run_of(project, text_set, 2, version=versions["v2"], chrf=50.0, bleu=12.0)
    going = run_of(project, text_set, 3, status=RunStatus.RUNNING)
    client = signed_in(project, "viewer")
    page = client.get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert f'<form method="get" action="/evaluation/sets/{text_set.pk}/compare/" id="compare-runs"' in page
    for run in (older, newer):
        assert f'<input type="checkbox" name="run" value="{run.pk}" form="compare-runs"' in row(page, run)
    assert 'type="checkbox"' not in row(page, going)  # not scored yet: nothing to compare
    response = client.get(f"/evaluation/sets/{text_set.pk}/compare/", {"run": [newer.pk, older.pk]})
    assert response.status_code == 302 and response["Location"] == f"/evaluation/runs/{older.pk}/?compare={newer.pk}"
    assert client.get(response["Location"]).status_code == 200
    for wrong in ([older.pk], [older.pk, older.pk], [older.pk, newer.pk, going.pk], ["not-a-run", older.pk], []):
        refused = client.get(f"/evaluation/sets/{text_set.pk}/compare/", {"run": wrong})
        assert refused.status_code == 400 and "Tick two runs" in refused.content.decode(), wrong


def test_an_owner_evaluates_a_version_again_from_its_row_once_per_form(project, text_set, versions, signed_in):
    v2 = versions["v2"]
    run = run_of(project, text_set, 1, version=v2, chrf=40.0, bleu=10.0)
    owner = signed_in(project, "owner")
    form = re.search(r'<form method="post" action="[^"]+/evaluate/" class="inline evaluate-again">(.*?)</form>',
                     row(owner.get(f"/evaluation/sets/{text_set.pk}/").content.decode(), run), re.S).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form))
    assert fields["model_version"] == str(v2.pk) and re.fullmatch(r"[0-9a-f]{32}", fields["once"])
    response = owner.post(f"/evaluation/sets/{text_set.pk}/evaluate/", fields)
    assert response.status_code == 302 and response["Location"] == f"/evaluation/sets/{text_set.pk}/"
    started = EvaluationRun.objects.exclude(pk=run.pk).get()
    assert started.model_version == v2 and started.created_by == owner.user and Job.objects.count() == 2
    assert AuditEvent.objects.filter(action="evaluation_started").count() == 1
    page = owner.get(response["Location"]).content.decode()
    assert "Evaluation of Support questions with model version v2 (chat/v2) started" in page
    assert rows(page)[0] == str(started.pk) and 'data-run-status="queued"' in row(page, started)
    # the same form again (a double click) starts nothing more
    assert owner.post(f"/evaluation/sets/{text_set.pk}/evaluate/", fields).status_code == 302
    assert EvaluationRun.objects.count() == 2 and "nothing more started" in owner.get(response["Location"]).content.decode()
    # a form without its token is refused, in the page, and starts nothing
    refused = owner.post(f"/evaluation/sets/{text_set.pk}/evaluate/", {"model_version": str(v2.pk), "once": "x"})
    assert refused.status_code == 400 and "This form is out of date" in refused.content.decode()
    assert EvaluationRun.objects.count() == 2


def test_an_owner_pins_a_version_from_a_runs_row_leaving_the_plugin_switched_as_it_was(
        project, text_set, versions, signed_in, other_project):
    v2, v3 = versions["v2"], versions["v3"]
    ProjectPlugin.objects.filter(project=project, plugin_id="chatbot").update(model_version=v2, enabled=False)
    on_v2 = run_of(project, text_set, 1, version=v2, chrf=40.0, bleu=10.0)
    on_v3 = run_of(project, text_set, 2, version=v3, chrf=50.0, bleu=12.0)
    owner = signed_in(project, "owner")
    page = owner.get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert "pin-version" not in row(page, on_v2)  # pinned already
    pin = re.search(r'<form method="post" action="([^"]+)" class="inline pin-version" data-confirm="([^"]*)">(.*?)</form>',
                    row(page, on_v3), re.S)
    assert pin.group(1) == f"/evaluation/sets/{text_set.pk}/pin/"
    assert pin.group(2) == "Pin v3 for Customer-service chatbot? Jobs that start from now on use it, those already queued too."
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', pin.group(3)))
    assert fields == {"csrfmiddlewaretoken": fields["csrfmiddlewaretoken"], "model_version": str(v3.pk)}
    response = owner.post(pin.group(1), fields)
    assert response.status_code == 302 and response["Location"] == f"/evaluation/sets/{text_set.pk}/"
    setting = ProjectPlugin.objects.get(project=project, plugin_id="chatbot")
    assert setting.model_version == v3 and setting.enabled is False
    event = AuditEvent.objects.get(action="plugin_configured")
    assert event.after["model_version"] == "v3" and event.actor == f"user:{owner.user.pk}"
    page = owner.get(response["Location"]).content.decode()
    assert "jobs that start from now on use model version v3 (chat/v3) (was model version v2 (chat/v2))" in page
    assert "pinned-chip" in row(page, on_v3) and "pin-version" in row(page, on_v2)
    # another project's private version, or no number, is no version of this plugin: nothing changes
    private = ModelVersion.objects.create(plugin_id="chatbot", version="theirs", model_dir="chat/theirs",
                                          project=other_project)
    for wrong in (str(private.pk), "abc", ""):
        refused = owner.post(pin.group(1), {"model_version": wrong})
        assert refused.status_code == 400 and "No such model version for this plugin." in refused.content.decode()
    assert ProjectPlugin.objects.get(project=project, plugin_id="chatbot").model_version == v3
    assert AuditEvent.objects.filter(action="plugin_configured").count() == 1


def test_the_runs_are_paged_and_the_page_reads_a_few_queries_however_many_runs(
        project, text_set, versions, signed_in, django_assert_max_num_queries):
    client = signed_in(project, "viewer")
    url = f"/evaluation/sets/{text_set.pk}/"
    run_of(project, text_set, 0, version=versions["v2"], chrf=30.0, bleu=5.0)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    made = [run_of(project, text_set, day, version=versions["v2" if day % 2 else "v3"], answered_by="v1",
                   chrf=30.0 + day, bleu=5.0) for day in range(1, 40)]
    made += [run_of(project, text_set, 40 + day, answered_by=name, chrf=20.0, bleu=1.0)
             for day, name in enumerate(("default", "v2", "gone-version"))]
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(url).content.decode()
    assert len(rows(page)) == 25 and 'id="runs-older"' in page and 'id="runs-newer"' not in page
    assert len(chart_points(page)) == 43 and "gone-version" in page
    older = client.get(url, {"page": "2"}).content.decode()
    assert len(rows(older)) == 18 and 'id="runs-newer"' in older and 'id="runs-older"' not in older
    for wrong in ("0", "-1", "x", "²", "9" * 30):
        assert client.get(url, {"page": wrong}).status_code == 200


def test_the_settings_card_and_the_run_page_link_the_sets_page(project, text_set, signed_in):
    run = run_of(project, text_set, 1, chrf=40.0, bleu=10.0)
    settings = signed_in(project, "owner").get("/settings/").content.decode()
    assert f'<a href="/evaluation/sets/{text_set.pk}/" class="set-history">' in settings
    run_page = signed_in(project, "viewer").get(f"/evaluation/runs/{run.pk}/").content.decode()
    assert f'<a href="/evaluation/sets/{text_set.pk}/" id="set-link">Support questions</a>' in run_page


def test_the_page_in_chinese(project, text_set, versions, signed_in):
    run_of(project, text_set, 1, version=versions["v2"], chrf=40.0, bleu=10.0)
    client = signed_in(project, "owner")
    client.cookies["django_language"] = "zh-hans"
    page = client.get(f"/evaluation/sets/{text_set.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "比较勾选的两次运行" in page and "chrF 随时间的变化" in page and "每次成功运行的 chrF" in page
    assert "Compare the two ticked" not in page and "over time" not in page and "started by" not in page
    v3 = run_of(project, text_set, 2, version=versions["v3"], chrf=50.0, bleu=10.0)
    page = client.get(f"/evaluation/sets/{text_set.pk}/").content.decode()
    assert "固定此版本" in row(page, v3) and "Pin this version" not in page
    assert "全部运行与趋势" in client.get("/settings/").content.decode()


def test_the_unpinned_model_is_never_named_as_if_a_version_were_called_default(project, text_set, signed_in):
    """A run of "the current model" answered unpinned names its model "default" (provenance, ``model_versions``): the
    pages showed "current model: default", and the settings page offered a version "default", as if one were called
    so. They say what it is, the plugin's own default model, not pinned, in English and in Chinese; a run still going
    has answered nothing yet, and says only "current model" (it said the default model, whatever was pinned)."""
    from tests.frontend.test_dashboard_fixes import in_chinese

    answered = run_of(project, text_set, 1, answered_by="default", chrf=31.25, bleu=8.0)
    going = run_of(project, text_set, 2, status=RunStatus.RUNNING)
    owner = signed_in(project, "owner")
    pages = {"set": owner.get(f"/evaluation/sets/{text_set.pk}/").content.decode(),
             "run": owner.get(f"/evaluation/runs/{answered.pk}/").content.decode(),
             "settings": owner.get("/settings/").content.decode()}
    unpinned = "the plugin&#x27;s default model (not pinned)"
    assert f"current model: {unpinned}" in row(pages["set"], answered) and f"current model: {unpinned}" in pages["run"]
    assert re.search(r"<td>current model(<|$)", row(pages["set"], going), re.M)
    # the chatbot's model version, unpinned (the template's own words: its apostrophe is not escaped)
    assert """<option value="">the plugin's default model (not pinned)</option>""" in pages["settings"]
    assert f"current model: {unpinned}" in pages["settings"]  # the evaluation section's row of the current model
    for name, page in pages.items():
        assert not re.search(r"current model: default\b|>default<", page), name

    owner = in_chinese(owner)
    chinese = {"set": owner.get(f"/evaluation/sets/{text_set.pk}/").content.decode(),
               "run": owner.get(f"/evaluation/runs/{answered.pk}/").content.decode(),
               "settings": owner.get("/settings/").content.decode()}
    for name, page in chinese.items():
        assert "插件的默认模型（未固定版本）" in page and "not pinned" not in page, name
        assert not re.search(r"：default\b|: default\b|>default<|>默认<", page), name
