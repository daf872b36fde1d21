"""The content library (/library/): the project's final content to browse, copy and export, as each member sees it."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from atelier_platform import exports
from atelier_platform.jobs.models import JobPurpose, Output, OutputFile, ReviewState
from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem
from tests.factories import MembershipFactory
from tests.frontend.library_rows import a_job, an_output, approved_by, with_image

pytestmark = pytest.mark.django_db

APPROVED, RELEASED, PENDING, REJECTED, BLOCKED = (ReviewState.APPROVED, ReviewState.RELEASED, ReviewState.PENDING,
                                                  ReviewState.REJECTED, ReviewState.BLOCKED)


def text_of(response) -> str:
    return response.content.decode()


def shown(response) -> list[str]:
    """The outputs the page shows, in order."""
    assert response.status_code == 200, response.content[:500]
    return re.findall(r'<article class="card library-item" data-output="([0-9a-f-]+)"', text_of(response))


def exported(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    assert response.streaming
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def editor(project, signed_in):
    return signed_in(project, "editor")


class TestWhatTheLibraryShows:
    def test_an_erased_jobs_output_is_neither_shown_nor_exported_nor_found(self, project, editor):
        from atelier_platform.jobs import erasure

        kept = an_output(project, "kept words", state=RELEASED)
        gone = an_output(project, "erased words", state=RELEASED)
        erasure.erase_jobs(project, [gone.job_id], "user:1")
        assert shown(editor.get("/library/")) == [str(kept.pk)]
        assert shown(editor.get("/library/", {"q": "erased"})) == []
        assert "erased words" not in exported(editor, "/library/?export=jsonl")
        assert [json.loads(line)["output_id"] for line in exported(editor, "/library/?export=jsonl").splitlines()] == [
            str(kept.pk)]

    def test_only_final_content_never_pending_rejected_or_blocked(self, project, editor, member):
        reviewer = member(project, "reviewer")
        approved = approved_by(an_output(project, "approved words", state=PENDING), reviewer)
        released = an_output(project, "released words", state=RELEASED)
        pending = an_output(project, "pending words", state=PENDING)
        rejected = approved_by(an_output(project, "rejected words", state=PENDING), reviewer, action="reject",
                               reason="off_brand")
        blocked = an_output(project, "blocked words", state=BLOCKED)
        evaluation = an_output(project, "evaluation words", state=PENDING, purpose=JobPurpose.EVALUATION)
        response = editor.get("/library/")
        assert shown(response) == [str(released.pk), str(approved.pk)]  # newest first
        page = text_of(response)
        assert "approved words" in page and "released words" in page
        for hidden in ("pending words", "rejected words", "blocked words", "evaluation words"):
            assert hidden not in page, hidden
        assert {o.pk for o in (pending, rejected, blocked, evaluation)}.isdisjoint(set(shown(response)))
        # who approved and when; the released one says it was released; each links to its job's page
        assert f"Approved by {reviewer.username}" in page and "Released after screening" in page
        assert f'href="/jobs/{approved.job_id}/"' in page and f'href="/jobs/{released.job_id}/"' in page

    def test_approvals_by_an_api_key_and_by_two_reviewers_are_named(self, project, editor, member):
        from atelier_platform.accounts.services import issue_api_key
        from atelier_platform.moderation.models import SafetyPolicy
        from tests.frontend.library_rows import approved_by_key

        key = issue_api_key(project, scopes=["reviews:read", "reviews:write"]).api_key
        by_key = approved_by_key(an_output(project, "by a script", state=PENDING), key)
        page = text_of(editor.get("/library/"))
        assert f"Approved by API key atl_{key.prefix}_…" in page
        [row] = [json.loads(line) for line in exported(editor, "/library/?export=jsonl").splitlines()]
        assert row["output_id"] == str(by_key.pk) and row["approved_by"] == [f"key:{key.prefix}"]
        SafetyPolicy.objects.filter(project=project).update(second_review_for_flagged=True)
        flagged = an_output(project, "flagged", state=PENDING)
        item = ReviewItem.objects.create(output=flagged, project=project, flagged=True)
        first, second = member(project, "reviewer"), member(project, "reviewer")
        for user in (first, second):
            reviewer = review.Reviewer(actor=f"user:{user.pk}", user_id=user.pk)
            review.claim(item, reviewer)
            review.decide(item, reviewer, action="approve")
        assert f"Approved by {first.username}, {second.username}" in text_of(editor.get("/library/"))

    def test_an_edited_and_approved_output_shows_the_edited_text(self, project, editor, member):
        output = an_output(project, "the first draft", state=PENDING)
        approved_by(output, member(project, "reviewer"), action="edit",
                    content={"text": "the words of the reviewer", "characters": len("the first draft")})
        page = text_of(editor.get("/library/"))
        assert "the words of the reviewer" in page and "the first draft" not in page
        assert shown(editor.get("/library/", {"q": "WORDS OF"})) == [str(output.pk)]  # the edit is what is found
        assert shown(editor.get("/library/", {"q": "draft"})) == []
        [row] = [json.loads(line) for line in exported(editor, "/library/?export=jsonl").splitlines()]
        assert row["text"] == "the words of the reviewer"

    def test_text_has_a_copy_button_scripts_only_from_static(self, project, editor):
        output = an_output(project, "line one\nline two")
        page = text_of(editor.get("/library/"))
        assert f'<div class="library-text text-block" id="text-{output.pk}">line one\nline two</div>' in page
        assert f'data-copy="text-{output.pk}"' in page and ">Copy</button>" in page
        assert "onclick" not in page and not re.search(r"<script(?![^>]*(src=\"/static/|type=\"application/json\"))", page)

    def test_images_show_their_thumbnail_open_full_size_and_download(self, project, editor):
        output = with_image(an_output(project, content={"index": 0, "width": 8, "height": 8}, plugin="image"))
        primary, thumbnail = (OutputFile.objects.get(output=output, role=role) for role in ("primary", "thumbnail"))
        page = text_of(editor.get("/library/"))
        full = f"/api/v1/outputs/{output.pk}/files/{primary.pk}/?project={project.slug}"
        small = f"/api/v1/outputs/{output.pk}/files/{thumbnail.pk}/?project={project.slug}"
        assert f'<a href="{full}" target="_blank" class="shot"><img src="{small}"' in page
        assert f'<a href="{full}" download class="download">Download</a>' in page
        assert 'data-kind="image"' in page
        assert editor.get(full).status_code == 200 and editor.get(small).status_code == 200

    def test_a_missing_or_erased_file_is_no_error(self, project, editor):
        output = with_image(an_output(project, content={"index": 0}, plugin="image"), thumbnail=False)
        primary = OutputFile.objects.get(output=output)
        primary.file.storage.delete(primary.file.name)  # gone from storage: the page still shows, the picture says so
        response = editor.get("/library/")
        assert shown(response) == [str(output.pk)] and 'data-missing="The file is missing from storage."' in text_of(response)
        assert editor.get(f"/api/v1/outputs/{output.pk}/files/{primary.pk}/?project={project.slug}").status_code == 404
        OutputFile.objects.filter(pk=primary.pk).update(file="")  # erased: no file at all
        response = editor.get("/library/")
        assert shown(response) == [str(output.pk)] and "/files/" not in text_of(response)
        download = editor.get(f"/api/v1/outputs/{output.pk}/files/{primary.pk}/?project={project.slug}")
        assert download.status_code == 404 and download.json()["error"]["code"] == "not_found"
        rows = list(csv.DictReader(io.StringIO(exported(editor, "/library/?export=csv"))))
        assert [json.loads(row["file_urls"]) for row in rows] == [[]]

    def test_a_ranked_list_shows_its_items_and_each_copy_variant(self, project, editor, empty_plugin_registry):
        from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

        empty_plugin_registry.register(RecommenderCopyPlugin)
        content = {"recommendations": [
            {"rank": 1, "item_id": "sku-1", "title": "Rain jacket", "score": 0.9,
             "copy": [{"text": "Stay dry in style.", "repaired": False, "source": "model"},
                      {"text": "Rain? No problem.", "repaired": False, "source": "model"}]},
            {"rank": 2, "item_id": "sku-2", "title": "Wool socks", "score": 0.7,
             "copy": [{"text": "Warm toes all winter.", "repaired": False, "source": "model"}]},
        ], "profile_summary": None}
        output = an_output(project, content=content, plugin="recommender_copy")
        page = text_of(editor.get("/library/"))
        assert 'data-kind="items"' in page
        assert re.findall(r'<li data-item="([^"]+)"><strong>([^<]+)</strong>', page) == [("sku-1", "Rain jacket"),
                                                                                          ("sku-2", "Wool socks")]
        for n, (item, variant, text) in enumerate([(1, 1, "Stay dry in style."), (1, 2, "Rain? No problem."),
                                                   (2, 1, "Warm toes all winter.")]):
            element = f"copy-{output.pk}-{item}-{variant}"
            assert f'<span class="library-text" id="{element}">{text}</span>' in page and f'data-copy="{element}"' in page
        assert shown(editor.get("/library/", {"q": "wool socks"})) == [str(output.pk)]  # a title is found
        assert shown(editor.get("/library/", {"q": "model"})) == []  # not what the plugin recorded (source: model)


class TestSearchFiltersAndPages:
    def test_search_finds_the_content_and_the_prompt_in_any_case_and_script(self, project, editor):
        coat = an_output(project, "A warm Café coat", prompt="write about coats")
        refund = an_output(project, "退货政策：三十天内", prompt="answer about returns")
        an_output(project, "something else", prompt="unrelated")
        blocked = an_output(project, "a café that was blocked", state=BLOCKED)
        assert shown(editor.get("/library/", {"q": "café"})) == [str(coat.pk)]  # never the blocked one
        assert shown(editor.get("/library/", {"q": "WARM CAFÉ"})) == [str(coat.pk)]
        assert shown(editor.get("/library/", {"q": "coat café"})) == []  # the words in the order written
        assert shown(editor.get("/library/", {"q": "退货"})) == [str(refund.pk)]
        assert shown(editor.get("/library/", {"q": "RETURNS"})) == [str(refund.pk)]  # the job's prompt
        assert shown(editor.get("/library/", {"q": "nothing like this"})) == []
        assert "Nothing in the library matches these filters." in text_of(editor.get("/library/", {"q": "nothing"}))
        assert blocked.search_text  # kept for the API's reviewers, never searched

    def test_filters_by_plugin_and_by_days_from_and_to_inclusive(self, project, editor):
        day = lambda d, h=12: datetime(2026, 12, d, h, tzinfo=dt_timezone.utc)  # noqa: E731
        first = an_output(project, "first", created_at=day(1, 0))
        second = an_output(project, "second", created_at=day(2, 23))
        third = an_output(project, "third", created_at=day(3), plugin="gpu_reverse")
        assert shown(editor.get("/library/", {"from": "2026-12-02"})) == [str(third.pk), str(second.pk)]
        assert shown(editor.get("/library/", {"to": "2026-12-02"})) == [str(second.pk), str(first.pk)]
        assert shown(editor.get("/library/", {"from": "2026-12-02", "to": "2026-12-02"})) == [str(second.pk)]
        assert shown(editor.get("/library/", {"plugin": "gpu_reverse"})) == [str(third.pk)]
        assert shown(editor.get("/library/", {"plugin": "gpu_reverse", "to": "2026-12-02"})) == []
        page = text_of(editor.get("/library/", {"plugin": "gpu_reverse"}))
        assert '<option selected>gpu_reverse</option>' in page

    @pytest.mark.parametrize("params, field, message", [
        ({"from": "yesterday"}, "from", "Dates as 2026-12-01."),
        ({"to": "2026-02-30"}, "to", "Dates as 2026-12-01."),
        ({"to": "9999-12-31"}, "to", "Dates as 2026-12-01."),
        ({"from": "2026-12-03", "to": "2026-12-01"}, "to", "The end date is before the start date."),
        ({"export": "xlsx"}, "export", "Export as CSV or JSON Lines."),
        ({"export": "csv", "from": "soon"}, "from", "Dates as 2026-12-01."),
    ])
    def test_a_bad_filter_is_a_form_error_never_a_server_error(self, project, editor, params, field, message):
        an_output(project, "something")
        response = editor.get("/library/", params)
        assert response.status_code == 400 and not response.streaming
        page = text_of(response)
        assert f'<p class="field-error" data-field="{field}">' in page and message in page
        assert "Correct the filters above to see the library." in page and shown_anyway(page) == []

    @pytest.mark.parametrize("params", [{"q": "\x00"}, {"plugin": "a\x00b"}, {"q": "x" * 5000}, {"page": "-3"},
                                        {"page": "many"}, {"page": "9" * 40}, {"from": "\x00"}])
    def test_odd_values_are_no_server_error(self, project, editor, params):
        assert editor.get("/library/", params).status_code in (200, 400)

    def test_pages_newest_first_as_the_jobs_list_pages(self, project, editor):
        outputs = [an_output(project, f"text {i}", created_at=datetime(2026, 12, 1, 0, i, tzinfo=dt_timezone.utc))
                   for i in range(30)]
        newest_first = [str(o.pk) for o in reversed(outputs)]
        first = editor.get("/library/", {"q": "text"})
        assert shown(first) == newest_first[:24]
        assert 'href="?q=text&amp;page=2" id="older"' in text_of(first) and 'id="newer"' not in text_of(first)
        second = editor.get("/library/", {"q": "text", "page": "2"})
        assert shown(second) == newest_first[24:]
        assert 'href="?q=text&amp;page=1" id="newer"' in text_of(second) and 'id="older"' not in text_of(second)


def shown_anyway(page: str) -> list[str]:
    return re.findall(r'data-output="([0-9a-f-]+)"', page)


class TestWhoSeesWhat:
    def test_every_member_browses_and_the_navigation_names_it(self, project, signed_in):
        an_output(project, "for everyone")
        for role in ("owner", "editor", "reviewer", "viewer"):
            client = signed_in(project, role)
            page = text_of(client.get("/library/"))
            assert "for everyone" in page and '<a href="/library/" class="active" data-nav="library">Library</a>' in page, role
            assert 'data-nav="library"' in text_of(client.get("/jobs/")), role

    def test_a_viewer_exports_too(self, project, signed_in):
        """An export holds what the page shows a viewer (and what GET /api/v1/outputs/ gives any jobs:read key)."""
        an_output(project, "for everyone")
        rows = list(csv.DictReader(io.StringIO(exported(signed_in(project, "viewer"), "/library/?export=csv"))))
        assert [row["text"] for row in rows] == ["for everyone"]

    def test_another_projects_content_never_appears(self, project, other_project, editor):
        mine = an_output(project, "mine")
        an_output(other_project, "theirs")
        MembershipFactory(project=other_project, user=editor.user, role="owner")  # a member there too
        assert shown(editor.get("/library/")) == [str(mine.pk)]
        assert shown(editor.get("/library/", {"q": "theirs"})) == []
        assert [json.loads(line)["text"] for line in exported(editor, "/library/?export=jsonl").splitlines()] == ["mine"]

    def test_signed_out_is_sent_to_sign_in(self, project):
        from django.test import Client

        response = Client().get("/library/")
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")

    def test_the_page_in_chinese(self, project, editor):
        an_output(project, "hello", state=RELEASED)
        editor.post("/language/", {"language": "zh-hans", "next": "/library/"})
        page = text_of(editor.get("/library/"))
        assert ">内容库</a>" in page and "<h1>内容库</h1>" in page and "筛查后发布" in page and ">复制</button>" in page


class TestExport:
    def test_csv_parses_back_with_what_a_cms_import_needs(self, project, editor, member):
        reviewer = member(project, "reviewer")
        output = approved_by(an_output(project, "first line\nsecond, with a comma", state=PENDING,
                                       prompt="Write two lines"), reviewer)
        image = with_image(an_output(project, content={"index": 0}, plugin="image", state=RELEASED))
        response = editor.get("/library/", {"export": "csv"})
        assert response["Content-Type"].startswith("text/csv")
        assert response["Content-Disposition"] == f'attachment; filename="library-{project.slug}.csv"'
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert list(rows[0]) == ["output_id", "job_id", "plugin", "index", "review_state", "final", "created_at",
                                 "approved_at", "approved_by", "text", "items", "file_urls", "thumbnail_urls", "prompt",
                                 "job_url"]
        by_id = {row["output_id"]: row for row in rows}
        text_row, image_row = by_id[str(output.pk)], by_id[str(image.pk)]
        assert [row["output_id"] for row in rows] == [str(image.pk), str(output.pk)]  # as the page: newest first
        assert text_row["text"] == "first line\nsecond, with a comma" and text_row["prompt"] == "Write two lines"
        assert (text_row["job_id"], text_row["plugin"], text_row["review_state"], text_row["final"]) == (
            str(output.job_id), "reverse_text", "approved", "true")
        assert json.loads(text_row["approved_by"]) == [reviewer.username]
        assert text_row["approved_at"] == output.review.decided_at.isoformat()
        assert text_row["job_url"] == f"http://testserver/jobs/{output.job_id}/"
        primary, thumbnail = (OutputFile.objects.get(output=image, role=role) for role in ("primary", "thumbnail"))
        assert json.loads(image_row["file_urls"]) == [
            f"http://testserver/api/v1/outputs/{image.pk}/files/{primary.pk}/?project={project.slug}"]
        assert json.loads(image_row["thumbnail_urls"]) == [
            f"http://testserver/api/v1/outputs/{image.pk}/files/{thumbnail.pk}/?project={project.slug}"]
        assert (image_row["approved_at"], json.loads(image_row["approved_by"]), image_row["text"]) == ("", [], "")
        assert editor.get(json.loads(image_row["file_urls"])[0]).status_code == 200  # the URL downloads the file

    def test_jsonl_parses_back_with_a_ranked_lists_items(self, project, editor):
        content = {"recommendations": [{"rank": 1, "item_id": "sku-1", "title": "Rain jacket", "score": 0.9,
                                        "copy": [{"text": "Stay dry.", "repaired": False, "source": "model"},
                                                 {"text": "Rain? Fine.", "repaired": False, "source": "model"}]}]}
        output = an_output(project, content=content, plugin="recommender_copy")
        response = editor.get("/library/", {"export": "jsonl"})
        assert response["Content-Type"] == "application/x-ndjson"
        [row] = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
        assert row["output_id"] == str(output.pk) and row["text"] == "" and row["final"] is True
        assert row["items"] == [{"rank": 1, "item_id": "sku-1", "title": "Rain jacket", "copy": ["Stay dry.", "Rain? Fine."]}]

    def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(self, project, editor):
        an_output(project, '=HYPERLINK("https://evil.example","click")', prompt="+SUM(A1:A9)")
        an_output(project, "-2+3", prompt="@cmd")
        an_output(project, "\tTabbed", prompt="\rreturn")
        rows = list(csv.DictReader(io.StringIO(exported(editor, "/library/?export=csv"))))
        assert [(row["text"], row["prompt"]) for row in rows] == [
            ("'\tTabbed", "'\rreturn"), ("'-2+3", "'@cmd"), ("'=HYPERLINK(\"https://evil.example\",\"click\")", "'+SUM(A1:A9)")]
        lines = [json.loads(line) for line in exported(editor, "/library/?export=jsonl").splitlines()]
        assert [(row["text"], row["prompt"]) for row in lines][-1] == ('=HYPERLINK("https://evil.example","click")',
                                                                      "+SUM(A1:A9)")  # JSON keeps them as they are

    def test_the_export_holds_what_the_page_found(self, project, editor):
        an_output(project, "red coat", created_at=datetime(2026, 12, 1, tzinfo=dt_timezone.utc))
        an_output(project, "red hat", created_at=datetime(2026, 12, 5, tzinfo=dt_timezone.utc))
        an_output(project, "red scarf", plugin="gpu_reverse", created_at=datetime(2026, 12, 5, tzinfo=dt_timezone.utc))
        an_output(project, "blue coat", state=PENDING)
        page = text_of(editor.get("/library/", {"q": "red", "from": "2026-12-02", "plugin": "reverse_text"}))
        link = re.search(r'<a href="\?([^"]+)" id="export-csv"', page)[1].replace("&amp;", "&")
        assert link == "q=red&plugin=reverse_text&from=2026-12-02&export=csv"
        rows = list(csv.DictReader(io.StringIO(exported(editor, f"/library/?{link}"))))
        assert [row["text"] for row in rows] == ["red hat"]
        assert "Export what is found" in page

    def test_a_large_export_streams_a_chunk_at_a_time(self, project, editor, monkeypatch):
        job = a_job(project, "one prompt")
        Output.objects.bulk_create([Output(job=job, index=i, content={"text": f"copy {i}", "characters": 6},
                                           review_state=APPROVED, search_text=f"copy {i}") for i in range(1000)])
        monkeypatch.setattr(exports, "EXPORT_CHUNK_SIZE", 100)
        response = editor.get("/library/", {"export": "jsonl"})
        assert response.streaming  # a StreamingHttpResponse: nothing is built before it is sent
        lines = iter(response.streaming_content)
        with CaptureQueriesContext(connection) as queries:
            first = json.loads(next(lines))
        files_read = lambda: [q for q in queries.captured_queries if '"jobs_outputfile"' in q["sql"]]  # noqa: E731
        assert first["text"].startswith("copy ") and len(files_read()) == 1  # one chunk read, not the whole export
        with CaptureQueriesContext(connection) as queries:
            rest = [json.loads(line) for line in lines]
        assert len(rest) == 999 and len({row["output_id"] for row in [first, *rest]}) == 1000
        assert len(files_read()) == 9  # the other nine chunks of 100, each with its files read once
