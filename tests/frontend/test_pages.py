"""Dashboard pages through Django's test client: access, roles, forms, flags, and query counts."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation.checks import replace_safety_checks
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.moderation.screening import policy_for
from tests.support.safety import WordCheck

pytestmark = pytest.mark.django_db


def text_of(response) -> str:
    return response.content.decode()


class TestAccess:
    def test_pages_need_a_sign_in(self, project):
        for url in ("/", "/create/", "/jobs/", "/review/"):
            response = Client().get(url)
            assert response.status_code == 302 and response["Location"].startswith("/login/?next=")

    def test_sign_in_page_and_wrong_password(self, project, member):
        user = member(project, "editor")
        client = Client()
        assert client.get("/login/").status_code == 200
        response = client.post("/login/", {"username": user.username, "password": "wrong"})
        assert response.status_code == 200 and "do not match" in text_of(response)
        response = client.post("/login/", {"username": user.username, "password": "correct horse battery staple"})
        assert response.status_code == 302
        assert client.get("/").status_code == 302

    def test_navigation_follows_the_role(self, project, signed_in):
        expected = {
            "owner": ["create", "jobs", "review"], "editor": ["create", "jobs"],
            "reviewer": ["jobs", "review"], "viewer": ["jobs"],
        }
        for role, nav in expected.items():
            page = text_of(signed_in(project, role).get("/jobs/"))
            assert [n for n in ("create", "jobs", "review") if f'data-nav="{n}"' in page] == nav, role

    def test_pages_the_role_does_not_allow_are_forbidden(self, project, signed_in):
        viewer = signed_in(project, "viewer")
        assert viewer.get("/create/").status_code == 403
        assert viewer.get("/review/").status_code == 403
        editor = signed_in(project, "editor")
        assert editor.get("/review/").status_code == 403

    def test_someone_without_a_project_is_told_so(self, db):
        from tests.factories import UserFactory

        client = Client()
        client.force_login(UserFactory())
        response = client.get("/jobs/")
        assert response.status_code == 403 and "not a member of any project" in text_of(response)

    def test_project_switcher_changes_the_project_among_memberships_only(self, project, other_project, signed_in, submit):
        from tests.factories import MembershipFactory

        editor = signed_in(project, "editor")
        MembershipFactory(project=other_project, user=editor.user, role="viewer")
        job = submit(other_project, text="only in the other project")
        assert "only in the other project" not in text_of(editor.get("/jobs/"))
        assert editor.get(f"/jobs/{job.pk}/").status_code == 404
        response = editor.post("/project/", {"project": other_project.slug, "next": "/jobs/"})
        assert response.status_code == 302 and response["Location"] == "/jobs/"
        page = text_of(editor.get("/jobs/"))
        assert "only in the other project" in page and 'data-nav="create"' not in page  # a viewer there
        assert editor.get(f"/jobs/{job.pk}/").status_code == 200
        from tests.factories import ProjectFactory

        stranger = ProjectFactory()
        assert editor.post("/project/", {"project": stranger.slug}).status_code == 404
        assert editor.post("/project/", {"project": project.slug, "next": "https://evil.example/"})["Location"] == "/"

    @pytest.mark.parametrize("elsewhere", ["/\\evil.example/", "/\t/evil.example/", "/\\/evil.example", "//evil.example"])
    def test_switching_never_leads_to_another_site(self, project, other_project, signed_in, elsewhere):
        """``next`` was followed when it started with one "/": a browser reads a backslash as "/" and drops tabs,
        so "/", backslash, "evil.example" led to another site, from the dashboard's own address."""
        from tests.factories import MembershipFactory

        editor = signed_in(project, "editor")
        MembershipFactory(project=other_project, user=editor.user, role="viewer")
        response = editor.post("/project/", {"project": other_project.slug, "next": elsewhere})
        assert response.status_code == 302 and response["Location"] == "/"


class TestCreate:
    def test_form_comes_from_the_plugins_schema(self, project, signed_in):
        page = text_of(signed_in(project, "editor").get("/create/reverse_text/"))
        assert '<textarea id="f-input-text" name="input.text"' in page
        assert 'type="number" id="f-input-copies" name="input.copies" value="1" step="1" min="1" max="5"' in page
        assert '<select id="f-input-fail" name="input.fail">' in page and '<option value="transient"' in page
        assert 'type="checkbox" id="f-params-uppercase" name="params.uppercase"' in page

    def test_the_built_in_plugins_get_usable_forms(self, project, signed_in, empty_plugin_registry):
        from atelier_plugins.chatbot.plugin import ChatbotPlugin
        from atelier_plugins.image.plugin import ImagePlugin
        from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin

        for plugin in (ChatbotPlugin, ImagePlugin, RecommenderCopyPlugin):
            empty_plugin_registry.register(plugin)
            set_plugin_enabled(project, plugin.manifest.id, True)
        editor = signed_in(project, "editor")
        chat = text_of(editor.get("/create/chatbot/"))
        assert 'id="f-input-messages" name="input.messages.user"' in chat and 'name="input.messages.system"' in chat
        assert '<input type="text" id="f-input-conversation_id"' in chat
        image = text_of(editor.get("/create/image/"))
        assert '<textarea id="f-input-prompt" name="input.prompt"' in image and 'name="input.steps" value="25"' in image
        recommender = text_of(editor.get("/create/recommender_copy/"))
        assert '<select id="f-input-tone" name="input.tone">' in recommender and 'name="input.items" rows="6"' in recommender

        response = editor.post("/create/image/", {"input.prompt": "a lighthouse", "input.width": "100", "priority": "5"})
        assert response.status_code == 400
        assert "multiple of 8" in text_of(response).split('data-field="input.width"')[1].split('data-field="input.height"')[0]
        response = editor.post("/create/recommender_copy/", {
            "input.items": '[{"id": "a1", "title": "Linen shirt"}]', "input.profile": '{"interests": "summer"}', "priority": "5"})
        assert response.status_code == 302
        assert Job.objects.get().input["items"][0]["title"] == "Linen shirt"

    def test_chat_messages_are_written_in_a_messages_editor_not_as_json(self, project, signed_in, empty_plugin_registry):
        from atelier_plugins.chatbot.plugin import ChatbotPlugin

        from atelier_frontend import schema_form

        empty_plugin_registry.register(ChatbotPlugin)
        set_plugin_enabled(project, "chatbot", True)
        editor = signed_in(project, "editor")
        [messages] = [f for f in schema_form.fields_for({"input_schema": ChatbotPlugin.input_schema(), "params_schema": {}})
                      if f.name == "input.messages"]
        assert (messages.kind, messages.choices, messages.required) == ("messages", ["system", "user", "assistant"], True)

        response = editor.post("/create/chatbot/", {"input.messages.system": "", "input.messages.user": "  ",
                                                    "input.use_knowledge": "on", "priority": "5"})
        assert response.status_code == 400 and not Job.objects.exists()
        assert "Write the user" in text_of(response).split('data-field="input.messages"')[1].split('data-field=')[0]
        response = editor.post("/create/chatbot/", {"input.messages.user": "hi", "input.messages.history": "[oops",
                                                    "priority": "5"})
        assert response.status_code == 400 and "Earlier turns: not valid JSON" in text_of(response)

        response = editor.post("/create/chatbot/", {
            "input.messages.system": "Answer in one sentence.", "input.messages.user": "Can I return shoes?",
            "input.use_knowledge": "on", "input.top_k": "3", "priority": "5"})
        assert response.status_code == 302
        job = Job.objects.get()
        assert job.input["messages"] == [{"role": "system", "content": "Answer in one sentence."},
                                         {"role": "user", "content": "Can I return shoes?"}]
        # reused: each message back in its box
        page = text_of(editor.get(f"/create/chatbot/?from={job.pk}"))
        assert 'name="input.messages.system" rows="2">Answer in one sentence.</textarea>' in page
        assert 'name="input.messages.user" rows="5">Can I return shoes?</textarea>' in page

        # earlier turns go between, as JSON; a message the plugin refuses comes back on the field
        turns = '[{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]'
        response = editor.post("/create/chatbot/", {"input.messages.user": "x" * 8001, "input.messages.history": turns,
                                                    "priority": "5"})
        assert response.status_code == 400
        assert "8000" in text_of(response).split('data-field="input.messages"')[1].split('data-field=')[0]
        assert editor.post("/create/chatbot/", {"input.messages.user": "And shoes?", "input.messages.history": turns,
                                                "priority": "5"}).status_code == 302
        assert [m["content"] for m in Job.objects.order_by("-created_at").first().input["messages"]] == ["Hello", "Hi!", "And shoes?"]

    def test_only_enabled_plugins_are_offered(self, project, signed_in):
        set_plugin_enabled(project, "gpu_reverse", False)
        editor = signed_in(project, "editor")
        page = text_of(editor.get("/create/"))
        assert 'data-plugin="reverse_text"' in page and 'data-plugin="gpu_reverse"' not in page
        assert editor.get("/create/gpu_reverse/").status_code == 404

    def test_errors_are_shown_on_their_fields_and_nothing_is_saved(self, project, signed_in):
        editor = signed_in(project, "editor")
        response = editor.post("/create/reverse_text/", {"input.text": "", "input.copies": "7", "input.sleep_s": "x", "priority": "5"})
        assert response.status_code == 400
        page = text_of(response)
        assert "Enter a number." in page  # unreadable here, before the plugin sees it
        assert not Job.objects.exists()
        response = editor.post("/create/reverse_text/", {"input.text": "", "input.copies": "7", "priority": "5"})
        page = text_of(response)
        assert page.index('data-field="input.text"') < page.index("String should have at least 1 character") < page.index('data-field="input.copies"')
        assert "Input should be less than or equal to 5" in page
        assert 'value="7"' in page  # what was typed stays
        assert not Job.objects.exists()

    def test_submit_saves_the_job_and_shows_it(self, project, signed_in, sent_messages, django_capture_on_commit_callbacks):
        editor = signed_in(project, "editor")
        with django_capture_on_commit_callbacks(execute=True):
            response = editor.post("/create/reverse_text/", {
                "input.text": "make this", "input.copies": "2", "input.fail": "none", "params.uppercase": "on", "priority": "7"})
        job = Job.objects.get()
        assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
        assert (job.input["text"], job.input["copies"], job.params, job.priority, job.submitted_by) == (
            "make this", 2, {"uppercase": True}, 7, editor.user)
        assert [m["args"] for m in sent_messages] == [[str(job.pk)]]

    def test_recent_prompts_are_listed_and_reusable(self, project, signed_in, submit):
        editor = signed_in(project, "editor")
        job = submit(project, text="a prompt worth keeping", user=editor.user, copies=3)
        page = text_of(editor.get("/create/reverse_text/"))
        assert f'href="?from={job.pk}"' in page and "a prompt worth keeping" in page
        page = text_of(editor.get(f"/create/reverse_text/?from={job.pk}"))
        assert ">a prompt worth keeping</textarea>" in page and 'name="input.copies" value="3"' in page

    def test_prompt_templates_are_saved_per_project_and_fill_the_form(self, project, other_project, signed_in):
        from atelier_frontend.models import PromptTemplate

        editor = signed_in(project, "editor")
        response = editor.post("/create/reverse_text/", {
            "input.text": "Spring sale: {product}", "input.copies": "2", "priority": "8", "save_template": "1", "template_name": ""})
        assert response.status_code == 400 and "Name the template" in text_of(response)
        response = editor.post("/create/reverse_text/", {
            "input.text": "Spring sale: {product}", "input.copies": "2", "priority": "8", "save_template": "1",
            "template_name": "Spring sale"})
        assert response.status_code == 200 and "saved for everyone in this project" in text_of(response)
        assert not Job.objects.exists()  # saving a template submits nothing
        template = PromptTemplate.objects.get()
        assert (template.name, template.input["text"], template.input["copies"], template.priority) == (
            "Spring sale", "Spring sale: {product}", 2, 8)

        colleague = signed_in(project, "owner")
        page = text_of(colleague.get("/create/reverse_text/"))
        assert f'href="?template={template.pk}"' in page and "<strong>Spring sale</strong>" in page
        page = text_of(colleague.get(f"/create/reverse_text/?template={template.pk}"))
        assert ">Spring sale: {product}</textarea>" in page and 'name="input.copies" value="2"' in page
        assert '<option value="8" selected>' in page

        stranger = signed_in(other_project, "editor")
        assert "Spring sale" not in text_of(stranger.get(f"/create/reverse_text/?template={template.pk}"))
        stranger.post("/create/reverse_text/", {"delete_template": str(template.pk)})
        assert PromptTemplate.objects.exists()
        colleague.post("/create/reverse_text/", {"delete_template": str(template.pk)})
        assert not PromptTemplate.objects.exists()

    def test_blocked_input_is_refused_with_the_reason(self, project, signed_in):
        replace_safety_checks([WordCheck()])
        response = signed_in(project, "editor").post("/create/reverse_text/", {"input.text": "a violent plan", "priority": "5"})
        assert response.status_code == 400 and "blocked by the project&#x27;s safety policy" in text_of(response)


class TestJobs:
    def test_filters_and_search(self, project, signed_in, submit, run_job):
        viewer = signed_in(project, "viewer")
        done = submit(project, text="blue whale")
        run_job(done)
        submit(project, text="red fox")
        page = text_of(viewer.get("/jobs/"))
        assert "blue whale" in page and "red fox" in page
        page = text_of(viewer.get("/jobs/?status=succeeded"))
        assert "blue whale" in page and "red fox" not in page
        page = text_of(viewer.get("/jobs/?q=FOX"))
        assert "blue whale" not in page and "red fox" in page
        assert "No job matches" in text_of(viewer.get("/jobs/?plugin=gpu_reverse"))

    @pytest.mark.parametrize("query", ["CAFÉ noir", "退货政策", 'say "hello"', "STRASSE"])
    def test_search_finds_prompts_by_what_they_say(self, project, signed_in, submit, query):
        """The search looked in the input's JSON: on SQLite that escapes every letter outside ASCII, and on
        every database a quote; its key names matched too ("copies" found every job)."""
        wanted = {"CAFÉ noir": "Un café noir, s'il vous plaît", "退货政策": "请问退货政策是什么？",
                  'say "hello"': 'Please say "hello" to the team', "STRASSE": "Lieferung in die Hauptstraße"}[query]
        job, other = submit(project, text=wanted), submit(project, text="something else entirely")
        viewer = signed_in(project, "viewer")
        page = text_of(viewer.get("/jobs/", {"q": query}))
        assert f'data-job="{job.pk}"' in page and f'data-job="{other.pk}"' not in page
        assert f'data-job="{other.pk}"' not in text_of(viewer.get("/jobs/", {"q": "copies"}))  # a key, not a word

    def test_jobs_saved_before_the_search_column_are_found_too(self, project, signed_in, submit):
        import importlib

        from django.apps import apps as installed

        job = submit(project, text="Ein Café am Fluss")
        Job.objects.filter(pk=job.pk).update(search_text="")
        importlib.import_module("atelier_platform.jobs.migrations.0005_job_search_text").fill_search_text(installed, None)
        assert f'data-job="{job.pk}"' in text_of(signed_in(project, "viewer").get("/jobs/", {"q": "café"}))

    def test_status_view_answers_for_this_projects_jobs_only(self, project, other_project, signed_in, submit):
        viewer = signed_in(project, "viewer")
        mine, theirs = submit(project), submit(other_project)
        answer = viewer.get(f"/jobs/status/?ids={mine.pk},{theirs.pk},not-a-uuid").json()
        cell = answer["jobs"][0].pop("html")  # the status cell as the pages render it
        assert answer == {"jobs": [{"id": str(mine.pk), "status": "queued", "progress": None, "detail": {},
                                    "error": "", "finished": False}]}
        assert 'class="status s-queued" data-status="queued">Queued</span>' in cell

    def test_jobs_created_after_the_list_loaded_come_with_the_poll_when_they_match_its_filters(
            self, project, other_project, signed_in, submit):
        import re

        viewer = signed_in(project, "viewer")
        first = submit(project, text="already listed")
        since = re.search(r'data-since="([^"]+)"', text_of(viewer.get("/jobs/"))).group(1)
        assert since == first.created_at.isoformat()
        assert 'data-since' not in text_of(viewer.get("/jobs/?page=2"))  # only the first page grows
        whale, fox = submit(project, text="blue whale"), submit(project, text="red fox")
        submit(other_project, text="blue whale elsewhere")
        answer = viewer.get("/jobs/status/", {"ids": str(first.pk), "since": since, "q": "whale"}).json()
        assert [job["id"] for job in answer["jobs"]] == [str(first.pk)]
        assert [job["id"] for job in answer["new"]] == [str(whale.pk)]
        assert f'data-job="{whale.pk}"' in answer["new"][0]["html"] and "blue whale" in answer["new"][0]["html"]
        assert answer["since"] == whale.created_at.isoformat()
        answer = viewer.get("/jobs/status/", {"since": since}).json()
        assert [job["id"] for job in answer["new"]] == [str(fox.pk), str(whale.pk)]
        assert viewer.get("/jobs/status/", {"since": answer["since"]}).json()["new"] == []
        assert "new" not in viewer.get("/jobs/status/", {"since": "not a time"}).json()

    def test_job_page_shows_input_output_flags_review_state_and_timeline(self, project, signed_in, submit, run_job):
        replace_safety_checks([WordCheck()])
        editor = signed_in(project, "editor")
        job = submit(project, text="enilredrob text", user=editor.user)  # reversed: "txet borderline"
        run_job(job)
        page = text_of(editor.get(f"/jobs/{job.pk}/"))
        assert '<mark class="flag" title="Harassment" data-category="harassment">borderline</mark>' in page
        assert '<span class="flag-chip" data-category="harassment">Harassment</span>' in page
        assert "Pending review" in page
        for step in ("created", "started", "succeeded", "output screened"):
            assert f'<span class="what">{step}</span>' in page.lower(), step

    def test_job_page_and_review_panel_name_the_people_and_keys_who_acted(self, project, signed_in, submit, run_job):
        """Not "user:12" or "key:ab12…": the reviewer's username, the key's name."""
        from atelier_platform.accounts.services import issue_api_key
        from atelier_platform.jobs.submission import JobRequest, submit_job
        from atelier_platform.moderation import review

        shop = issue_api_key(project, name="shop backend").api_key
        job = submit_job(project, JobRequest(plugin_id="reverse_text", input={"text": "hello"}, params={}), api_key=shop).job
        run_job(job)
        reviewer = signed_in(project, "reviewer")
        item = ReviewItem.objects.get(output__job=job)
        acting = review.Reviewer(actor=f"user:{reviewer.user.pk}", user_id=reviewer.user.pk)
        review.decide(review.claim(item, acting), acting, action="reject", reason="off_brand")
        page = text_of(reviewer.get(f"/jobs/{job.pk}/"))
        assert f"API key shop backend (atl_{shop.prefix}_…)" in page  # who submitted it
        assert f'<span title="user:{reviewer.user.pk}">{reviewer.user.username}</span>' in page  # the decision
        assert "<span class=\"what\">lease claimed</span>" in page and f"user:{reviewer.user.pk}<" not in page
        panel = text_of(reviewer.get(f"/review/items/{item.pk}/"))
        assert f'<span title="user:{reviewer.user.pk}">{reviewer.user.username}</span>' in panel


    def test_images_show_in_a_gallery_served_to_the_signed_in_member(self, project, signed_in, submit):
        import io

        from django.core.files.base import ContentFile
        from PIL import Image

        from atelier_platform.jobs.models import Output, OutputFile

        job = submit(project, text="a red square")
        output = Output.objects.create(job=job, index=0, content={"index": 0, "width": 8, "height": 8, "seed": 1})
        png = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(png, format="PNG")
        stored = OutputFile(output=output, role="primary", media_type="image/png", size=len(png.getvalue()))
        stored.file.save("0.png", ContentFile(png.getvalue()), save=True)
        viewer = signed_in(project, "viewer")
        page = text_of(viewer.get(f"/jobs/{job.pk}/"))
        url = f"/api/v1/outputs/{output.pk}/files/{stored.pk}/?project={project.slug}"
        assert f'<img src="{url}"' in page and 'id="lightbox"' in page
        answer = viewer.get(url)
        assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
        assert b"".join(answer.streaming_content) == png.getvalue()


    def test_a_queued_job_is_cancelled_from_its_page(self, project, signed_in, submit, django_capture_on_commit_callbacks):
        job = submit(project)
        viewer = signed_in(project, "viewer")
        assert 'id="cancel-job"' not in text_of(viewer.get(f"/jobs/{job.pk}/"))
        assert viewer.post(f"/jobs/{job.pk}/cancel/").status_code == 403
        editor = signed_in(project, "editor")
        assert 'id="cancel-job"' in text_of(editor.get(f"/jobs/{job.pk}/"))
        with django_capture_on_commit_callbacks(execute=True):
            assert editor.post(f"/jobs/{job.pk}/cancel/")["Location"] == f"/jobs/{job.pk}/"
        job.refresh_from_db()
        assert job.status == "cancelled"
        assert editor.post(f"/jobs/{job.pk}/cancel/").status_code == 302  # already finished: nothing to do
        assert 'id="cancel-job"' not in text_of(editor.get(f"/jobs/{job.pk}/"))


    def test_ranked_items_show_with_their_copy_variants_and_flags(self):
        from atelier_frontend.rendering import render_value, spans_of

        content = {"recommendations": [
            {"rank": 1, "item_id": "lamp-2", "title": "Paper lamp", "score": 0.8123,
             "copy": [{"text": "Soft light for calm evenings.", "source": "model"}, {"text": "A violent glow.", "source": "edited"}]},
            {"rank": 2, "item_id": "rug-7", "title": "Linen rug", "score": 0.5, "copy": [{"text": "Warm underfoot."}]},
        ], "profile_summary": "likes calm rooms"}
        report = {"findings": [{"category": "violence", "field": "content.recommendations.0.copy.1.text",
                                "evidence": [{"start": 2, "end": 9}]}]}
        html = str(render_value(content, "content", spans_of(report)))
        assert html.index("Paper lamp") < html.index("Linen rug") and '<span class="rank">1</span>' in html
        assert "0.812" in html and "Soft light for calm evenings." in html and '<span class="chip">edited</span>' in html
        assert 'A <mark class="flag" title="Violence" data-category="violence">violent</mark> glow.' in html
        assert "likes calm rooms" in html


class TestReview:
    def test_panel_shows_the_item_with_flags_and_the_second_reviewer_rule(self, project, signed_in, submit, run_job):
        replace_safety_checks([WordCheck()])
        policy = policy_for(project)
        policy.second_review_for_flagged = True
        policy.save()
        editor = signed_in(project, "editor")
        run_job(submit(project, text="enilredrob", user=editor.user))
        item = ReviewItem.objects.get()
        assert item.flagged
        reviewer = signed_in(project, "reviewer")
        page = text_of(reviewer.get("/review/"))
        assert "Flagged items need two approvals" in page and "off_brand" in page
        page = text_of(reviewer.get(f"/review/items/{item.pk}/"))
        assert 'data-category="harassment">borderline</mark>' in page
        assert "Second-reviewer rule: 0 of 2 approvals so far." in page
        assert "You submitted this job" not in page
        editor.user.memberships.update(role="owner")  # the submitter, now allowed to review, still may not approve
        assert "You submitted this job" in text_of(editor.get(f"/review/items/{item.pk}/"))

    def test_panel_names_the_safety_checks_that_were_not_running(self, project, signed_in, submit, run_job, monkeypatch):
        from tests.support.safety import words_and_a_check_not_running

        words_and_a_check_not_running(monkeypatch, "missing_model", "ImportError: no module named missing_model")
        run_job(submit(project, text="calm words"))
        reviewer = signed_in(project, "reviewer")
        page = text_of(reviewer.get(f"/review/items/{ReviewItem.objects.get().pk}/"))
        assert "Not screened by these safety checks, which were not running: missing_model." in page
        reviewer.post("/language/", {"language": "zh-hans", "next": "/review/"})
        assert "以下安全检查当时未运行，本内容未经其筛查：missing_model。" in text_of(
            reviewer.get(f"/review/items/{ReviewItem.objects.get().pk}/"))
        reviewer.post("/language/", {"language": "en", "next": "/review/"})
        replace_safety_checks([WordCheck()])
        run_job(submit(project, text="more calm words"))
        fully_screened = ReviewItem.objects.order_by("-pk").first()
        assert "Not screened by" not in text_of(reviewer.get(f"/review/items/{fully_screened.pk}/"))

    def test_bulk_approval_takes_unflagged_items_only_and_never_the_reviewers_own(
            self, project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
        replace_safety_checks([WordCheck()])
        editor, reviewer = signed_in(project, "editor"), signed_in(project, "reviewer")
        plain = [submit(project, text=f"plain {i}", user=editor.user) for i in range(2)]
        flagged = submit(project, text="enilredrob", user=editor.user)
        own = submit(project, text="mine", user=reviewer.user)
        for job in (*plain, flagged, own):
            run_job(job)
        assert "Approve all 2 unflagged items" in text_of(reviewer.get("/review/"))
        with django_capture_on_commit_callbacks(execute=True):
            answer = reviewer.post("/review/bulk-approve/", {"counted_at": timezone.now().isoformat()}).json()
        assert answer == {"approved": 2, "passed": 0, "left": 0, "message": "Approved without review: 2 items."}
        states = dict(ReviewItem.objects.values_list("output__job__input__text", "output__review_state"))
        assert states == {"plain 0": "approved", "plain 1": "approved", "enilredrob": "pending", "mine": "pending"}
        assert "unflagged item" not in text_of(reviewer.get("/review/"))
        assert signed_in(project, "editor").post("/review/bulk-approve/").status_code == 403

    def test_bulk_approval_leaves_the_items_that_arrived_after_the_page_counted_them(
            self, project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
        """The reviewer confirms "approve these 2 items"; a third that arrived meanwhile was never counted nor seen."""
        editor, reviewer = signed_in(project, "editor"), signed_in(project, "reviewer")
        for text in ("counted 0", "counted 1"):
            run_job(submit(project, text=text, user=editor.user))
        page = text_of(reviewer.get("/review/"))
        assert "Approve all 2 unflagged items" in page
        counted_at = re.search(r'data-counted-at="([^"]+)"', reviewer.get("/review/").content.decode()).group(1)
        run_job(submit(project, text="arrived later", user=editor.user))
        with django_capture_on_commit_callbacks(execute=True):
            answer = reviewer.post("/review/bulk-approve/", {"counted_at": counted_at}).json()
        assert (answer["approved"], answer["passed"], answer["left"]) == (2, 0, 0)  # the one that arrived is not counted
        states = dict(ReviewItem.objects.values_list("output__job__input__text", "output__review_state"))
        assert states == {"counted 0": "approved", "counted 1": "approved", "arrived later": "pending"}
        # without the time of the count (or with a time of no one moment), nothing is approved
        for sent in ({}, {"counted_at": "2026-12-05T14:50:00"}, {"counted_at": "2026-13-45T99:00:00+00:00"}):
            answer = reviewer.post("/review/bulk-approve/", sent)
            assert (answer.status_code, answer.json()["error"]["code"]) == (400, "validation_error"), sent
        assert ReviewItem.objects.get(output__job__input__text="arrived later").state == "open"

    def test_bulk_approval_leaves_audit_samples_to_a_person(self, project, signed_in, submit, run_job,
                                                             django_capture_on_commit_callbacks):
        """Under release after screening, the sample is the only human look at what went out."""
        policy = policy_for(project)
        policy.review_mode, policy.audit_sample_percent = "release_after_screening", 100
        policy.save()
        run_job(submit(project, text="released", user=signed_in(project, "editor").user))
        assert ReviewItem.objects.get().sampled
        reviewer = signed_in(project, "reviewer")
        assert "unflagged item" not in text_of(reviewer.get("/review/"))
        with django_capture_on_commit_callbacks(execute=True):
            assert reviewer.post("/review/bulk-approve/", {"counted_at": timezone.now().isoformat()}).json() == {
                "approved": 0, "passed": 0, "left": 0, "message": "Approved without review: 0 items."}
        assert ReviewItem.objects.get().state == "open"

    def test_the_bulk_button_says_what_one_click_approves_past_its_limit_and_what_is_left(
            self, project, signed_in, submit, run_job, monkeypatch, django_capture_on_commit_callbacks):
        """One click approves ``BULK_LIMIT`` items (100): the button said "Approve all 150" and approved 100. With a
        limit of 2 and 3 items counted: "Approve 2 of 3", then 1 left, said, and the next click approves it."""
        from atelier_frontend import views

        monkeypatch.setattr(views, "BULK_LIMIT", 2)
        editor, reviewer = signed_in(project, "editor"), signed_in(project, "reviewer")
        for text in ("first", "second", "third"):
            run_job(submit(project, text=text, user=editor.user))
        page = reviewer.get("/review/").content.decode()
        assert ">Approve 2 of 3 unflagged items</button>" in page and "Approve all 3" not in page
        assert 'data-confirm="Approve the first 2 of 3 unflagged items without looking at them? The other 1 wait' in page
        counted_at = re.search(r'data-counted-at="([^"]+)"', page).group(1)
        standing = reviewer.get("/review/standing/", {"counted_at": counted_at}).json()
        assert standing["bulk"]["label"] == "Approve 2 of 3 unflagged items"
        with django_capture_on_commit_callbacks(execute=True):
            answer = reviewer.post("/review/bulk-approve/", {"counted_at": counted_at}).json()
        assert answer == {"approved": 2, "passed": 0, "left": 1, "message": (
            "Approved without review: 2 items. 1 more unflagged item is left: press the button again to approve it.")}
        # the oldest first, as the queue shows them
        states = dict(ReviewItem.objects.values_list("output__job__input__text", "state"))
        assert states == {"first": "decided", "second": "decided", "third": "open"}
        assert reviewer.get("/review/standing/", {"counted_at": counted_at}).json()["bulk"]["label"] == (
            "Approve 1 unflagged item")
        reviewer.post("/language/", {"language": "zh-hans", "next": "/review/"})
        with django_capture_on_commit_callbacks(execute=True):
            answer = reviewer.post("/review/bulk-approve/", {"counted_at": counted_at}).json()
        assert (answer["approved"], answer["left"]) == (1, 0) and answer["message"] == "已批量批准：1 条。"
        assert not ReviewItem.objects.filter(state="open").exists()

    def test_the_queues_standing_says_where_the_item_stands_and_what_the_bulk_button_still_covers(
            self, project, other_project, signed_in, submit, run_job, django_capture_on_commit_callbacks):
        """What the queue page's header ("2 of 3 pending items") and bulk button follow as items are decided."""
        from atelier_platform.moderation import review

        editor, reviewer = signed_in(project, "editor"), signed_in(project, "reviewer")
        for text in ("first", "second", "third"):
            run_job(submit(project, text=text, user=editor.user))
        run_job(submit(other_project, text="elsewhere"))
        first, second, third = ReviewItem.objects.filter(project=project).order_by("created_at", "pk")
        elsewhere = ReviewItem.objects.get(project=other_project)
        counted_at = re.search(r'data-counted-at="([^"]+)"', reviewer.get("/review/").content.decode()).group(1)

        def standing(**query):
            answer = reviewer.get("/review/standing/", query)
            assert answer.status_code == 200
            return answer.json()

        answer = standing(item=second.pk, counted_at=counted_at)
        assert (answer["position"], answer["pending"], answer["header"]) == (2, 3, "2 of 3 pending items")
        assert answer["bulk"] == {"count": 3, "label": "Approve all 3 unflagged items",
                                  "confirm": "Approve all 3 unflagged items without looking at them?"}
        # another project's item stands nowhere in this queue, and is not counted
        assert standing(item=elsewhere.pk)["header"] == "3 pending items"
        assert standing(item=first.pk, flagged="true")["header"] == "Queue empty"

        with django_capture_on_commit_callbacks(execute=True):
            deciding = review.Reviewer(actor=f"user:{reviewer.user.pk}", user_id=reviewer.user.pk)
            for item in (first, second):
                review.decide(review.claim(item, deciding), deciding, action="approve")
        answer = standing(item=third.pk, counted_at=counted_at)
        assert answer["header"] == "1 of 1 pending item"
        assert answer["bulk"] == {"count": 1, "label": "Approve 1 unflagged item",
                                  "confirm": "Approve 1 unflagged item without looking at it?"}
        run_job(submit(project, text="arrived later", user=editor.user))
        answer = standing(item=third.pk, counted_at=counted_at)
        assert (answer["header"], answer["bulk"]["count"]) == ("1 of 2 pending items", 1)  # not counted: never told of

        reviewer.post("/language/", {"language": "zh-hans", "next": "/review/"})
        assert standing(item=third.pk)["header"] == "待审核 2 条中的第 1 条"
        assert standing(item=third.pk, counted_at="2020-01-01T00:00:00-23:59")["bulk"]["count"] == 0  # any offset
        for bad in ({"item": "62x"}, {"item": "1" * 30}, {"counted_at": "2026-12-05T14:50:00"}, {"counted_at": "soon"},
                    {"counted_at": "9999-12-31T23:59:59-01:00"}):
            refused = reviewer.get("/review/standing/", bad)
            assert (refused.status_code, refused.json()["error"]["code"]) == (400, "validation_error"), bad
        assert editor.get("/review/standing/").status_code == 403

    def test_panel_of_another_projects_item_is_not_found(self, project, other_project, signed_in, submit, run_job):
        run_job(submit(other_project))
        item = ReviewItem.objects.get()
        assert signed_in(project, "reviewer").get(f"/review/items/{item.pk}/").status_code == 404


class TestUsage:
    def test_figures_per_day_from_jobs_outputs_and_reviews(self, project, signed_in, submit, run_job):
        from django.utils import timezone

        from atelier_frontend.usage import summary
        from atelier_platform.jobs.models import Output
        from atelier_platform.moderation import review

        editor = signed_in(project, "editor")
        done = [submit(project, text=f"t{i}", user=editor.user) for i in range(3)]
        for job in done:
            run_job(job)
        submit(project, text="still queued")
        Output.objects.create(job=done[0], index=1, content={"usage": {"prompt_tokens": 30, "completion_tokens": 12}})
        reviewer = review.Reviewer(actor="user:999")
        items = list(ReviewItem.objects.order_by("pk"))
        review.decide(review.claim(items[0], reviewer), reviewer, action="approve")
        review.decide(review.claim(items[1], reviewer), reviewer, action="reject", reason="off_brand")

        figures = summary(project)
        today = figures["days"].index(timezone.now().date().isoformat())
        assert today == 13 and figures["jobs_per_plugin"] == {"reverse_text": [0] * 13 + [4]}
        assert figures["approval_rate"][today] == 0.5 and figures["decided"][today] == 2
        assert figures["queue_depth"][today] == 1 and figures["now"] == {"queued": 1, "running": 0, "review_open": 1}
        assert figures["latency_p50"][today] > 0 and figures["latency_p95"][today] >= figures["latency_p50"][today]
        assert figures["tokens"][today] == 42 and figures["images"][today] == 0
        assert figures["compute_seconds"][today] >= 0 and figures["latency_p50"][:13] == [None] * 13

        page = text_of(editor.get("/usage/"))
        assert 'data-series="jobs_per_plugin"' in page and 'id="usage-data"' in page

    def test_percentile_is_nearest_rank(self):
        from atelier_frontend.usage import percentile

        assert percentile([], 0.5) is None
        assert percentile([3, 1, 2], 0.5) == 2 and percentile(list(range(1, 101)), 0.95) == 95


class TestQueryCounts:
    """Each page reads a fixed number of times, whether the project has one row or twenty."""

    def count(self, client, url) -> int:
        assert client.get(url).status_code == 200  # warm: sessions, the policy row, ...
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    def test_lists_and_pages_do_not_grow_with_the_data(self, project, signed_in, submit, run_job):
        replace_safety_checks([WordCheck()])
        owner = signed_in(project, "owner")
        editor_user = signed_in(project, "editor").user

        def pages():
            job = Job.objects.annotate(n=Count("outputs")).order_by("-n", "created_at").first()
            item = ReviewItem.objects.order_by("pk").first()
            ids = ",".join(str(pk) for pk in Job.objects.values_list("pk", flat=True))
            return {
                "create": "/create/", "form": "/create/reverse_text/", "jobs": "/jobs/", "jobs q": "/jobs/?q=borderline",
                "status": f"/jobs/status/?ids={ids}",
                "new jobs": "/jobs/status/?since=2000-01-01T00:00:00%2B00:00", "job": f"/jobs/{job.pk}/", "review": "/review/",
                "panel": f"/review/items/{item.pk}/", "usage": "/usage/",
            }

        def add_jobs(n, copies):
            for i in range(n):
                job = submit(project, text=f"enilredrob {i}", user=owner.user if i % 2 else editor_user, copies=copies if i == 0 else 1)
                run_job(job)

        add_jobs(1, copies=1)
        few = {name: self.count(owner, url) for name, url in pages().items()}
        add_jobs(19, copies=5)  # and the job page shows five outputs instead of one
        many = {name: self.count(owner, url) for name, url in pages().items()}
        assert Job.objects.count() == 20 and ReviewItem.objects.count() == 24
        assert many == few

    def test_the_library_reads_as_often_with_one_output_as_with_twenty(self, project, signed_in, member,
                                                                       empty_plugin_registry):
        """Every kind of card: a text approved by a member, one approved by an API key, a released one, an image with
        its thumbnail, a ranked list edited and approved; who approved each named in two queries, not one per card."""
        from atelier_platform.accounts.services import issue_api_key
        from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
        from tests.frontend.library_rows import a_ranked_list, an_output, approved_by, approved_by_key, with_image

        empty_plugin_registry.register(RecommenderCopyPlugin)
        owner = signed_in(project, "owner")
        reviewer, key = member(project, "reviewer"), issue_api_key(project, scopes=["reviews:read", "reviews:write"]).api_key
        ranked = a_ranked_list(("sku-1", "Rain jacket", ["Stay dry.", "Rain? Fine."]), ("sku-2", "Socks", ["Warm."]))

        def add(n):
            for i in range(n):
                kind = Output.objects.count() % 5
                if kind == 0:
                    approved_by(an_output(project, f"copy {i}", state="pending"), member(project, "reviewer"))
                elif kind == 1:
                    approved_by_key(an_output(project, f"copy {i}", state="pending"), key)
                elif kind == 2:
                    an_output(project, f"copy {i}", state="released")
                elif kind == 3:
                    with_image(an_output(project, content={"index": 0}, plugin="image", prompt=f"copy {i}"))
                else:
                    edited = {**ranked, "recommendations": [{**ranked["recommendations"][0], "copy": [
                        {**ranked["recommendations"][0]["copy"][0], "text": f"copy {i}"}]}]}
                    output = an_output(project, content=a_ranked_list(("sku-1", "Rain jacket", ["Stay dry."])),
                                       state="pending", plugin="recommender_copy")
                    approved_by(output, reviewer, action="edit", content=edited)

        urls = {"library": "/library/", "library q": "/library/?q=copy",
                "library filtered": "/library/?plugin=reverse_text&from=2000-01-01&to=2999-12-31"}
        add(1)
        few = {name: self.count(owner, url) for name, url in urls.items()}
        add(19)
        many = {name: self.count(owner, url) for name, url in urls.items()}
        assert Output.objects.count() == 20 and len(re.findall(r'class="card library-item"', text_of(owner.get("/library/")))) == 20
        assert many == few


class TestLanguages:
    def test_catalogues_compile_and_the_dashboard_switches_to_simplified_chinese(self, project, signed_in, tmp_path):
        import shutil

        from atelier_frontend.i18n import LOCALE_DIR, compile_catalogues

        copy = tmp_path / "locale"
        shutil.copytree(LOCALE_DIR, copy, ignore=shutil.ignore_patterns("*.mo"))
        assert [p.relative_to(copy).as_posix() for p in compile_catalogues(copy)] == ["zh_Hans/LC_MESSAGES/django.mo"]
        assert compile_catalogues(copy) == []  # up to date: not written again

        editor = signed_in(project, "editor")
        page = text_of(editor.get("/jobs/"))
        assert ">Jobs</a>" in page and 'lang="en"' in page
        response = editor.post("/language/", {"language": "zh-hans", "next": "/jobs/"})
        assert response.status_code == 302 and response["Location"] == "/jobs/"
        page = text_of(editor.get("/jobs/"))
        assert 'lang="zh-hans"' in page and ">任务</a>" in page and "还没有任务。" in page and "编辑</span>" in page
        import json
        import re

        words = json.loads(re.search(r'<script id="atelier-text" type="application/json">(.*?)</script>', page).group(1))
        assert words["status"]["queued"] == "排队中"  # the scripts' words too
        editor.post("/language/", {"language": "en", "next": "/jobs/"})
        assert ">Jobs</a>" in text_of(editor.get("/jobs/"))
