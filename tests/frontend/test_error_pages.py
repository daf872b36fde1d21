"""The dashboard's 403, 404, 500 and refused-form (CSRF) pages: the same status as before, inside the dashboard's
layout (header, project switcher, language), in the person's language, saying what happened and where to go
on. The APIs keep their JSON errors."""

from __future__ import annotations

import json

import pytest
from django.test import Client, RequestFactory

from atelier_platform.accounts.models import Membership
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.conversations.models import Conversation
from tests.factories import MembershipFactory, ProjectFactory
from tests.frontend.test_dashboard_fixes import in_chinese, text_of

pytestmark = pytest.mark.django_db

LAYOUT = ('<header class="topbar">', 'id="language-switcher"')


def in_layout(page: str) -> bool:
    return all(part in page for part in LAYOUT)


@pytest.fixture
def two_projects(project, signed_in):
    """An editor of ``project`` (the current one) who is also a viewer of another project, "Spring campaign"."""
    editor = signed_in(project, "editor")
    spring = ProjectFactory(name="Spring campaign", slug="zz-spring")
    set_plugin_enabled(spring, "reverse_text", True)
    MembershipFactory(project=spring, user=editor.user, role="viewer")
    editor.post("/project/", {"project": project.slug})
    return editor, spring


def test_a_job_of_another_of_ones_projects_is_not_found_here_with_a_way_to_switch_to_it(
        project, two_projects, submit):
    editor, spring = two_projects
    theirs = submit(spring, text="a job of the spring campaign")
    response = editor.get(f"/jobs/{theirs.pk}/")
    page = text_of(response)
    assert response.status_code == 404 and in_layout(page)
    assert 'id="project-switcher"' in page and 'data-nav="jobs"' in page  # the header of a signed-in member
    assert "<h1>Job not found</h1>" in page and f"in the project “{project.name}”" in page
    assert f'name="project" value="{spring.slug}"' in page and "Switch to “Spring campaign” and open it there" in page
    assert f'href="/jobs/">The jobs of “{project.name}”</a>' in page and 'href="/">Start page</a>' in page

    switched = editor.post("/project/", {"project": spring.slug, "next": f"/jobs/{theirs.pk}/"})
    assert switched.status_code == 302 and editor.get(switched["Location"]).status_code == 200

    page = text_of(in_chinese(editor).get(f"/jobs/{submit(project).pk}/"))  # now in Spring: the first project's job
    assert "<h1>找不到该任务</h1>" in page and f"切换到“{project.name}”并在那里打开" in page and "Job not found" not in page


def test_a_job_of_a_project_one_is_not_a_member_of_is_not_found_and_its_project_not_named(
        project, signed_in, submit):
    secret = ProjectFactory(name="Secret merger")
    set_plugin_enabled(secret, "reverse_text", True)
    theirs = submit(secret, text="not yours")
    response = signed_in(project, "editor").get(f"/jobs/{theirs.pk}/")
    page = text_of(response)
    assert response.status_code == 404 and "<h1>Job not found</h1>" in page
    assert "Secret merger" not in page and secret.slug not in page and "switch-to" not in page


def test_a_conversation_of_another_project_is_not_found_with_a_way_to_it_where_the_role_opens_it(project, two_projects):
    editor, spring = two_projects
    thread = Conversation.objects.create(project=spring, plugin_id="reverse_text")
    page = text_of(editor.get(f"/chat/{thread.pk}/"))
    # a viewer there: the chat needs jobs:write, so switching would end in a 403
    assert "<h1>Conversation not found</h1>" in page and "switch-to" not in page
    Membership.objects.filter(project=spring, user=editor.user).update(role="editor")
    page = text_of(editor.get(f"/chat/{thread.pk}/"))
    assert f'name="project" value="{spring.slug}"' in page
    editor.post("/project/", {"project": spring.slug})
    assert editor.get(f"/chat/{thread.pk}/").status_code == 200  # the offer leads to the conversation


def test_a_mistyped_address_is_a_dashboard_page_signed_in_and_signed_out(project, signed_in):
    viewer = signed_in(project, "viewer")
    response = viewer.get("/jbos/")
    page = text_of(response)
    assert response.status_code == 404 and in_layout(page) and "<h1>No such page</h1>" in page
    assert 'href="/jobs/">' in page and 'id="logout"' in page
    page = text_of(in_chinese(viewer).get("/jbos/"))
    assert "<h1>没有这个页面</h1>" in page and "链接可能输错了" in page and f"“{project.name}”的任务" in page

    response = Client().get("/jbos/?x=1")
    page = text_of(response)
    assert response.status_code == 404 and in_layout(page) and "<h1>No such page</h1>" in page
    assert 'href="/login/?next=%2Fjbos%2F%3Fx%3D1">Sign in</a>' in page and 'id="logout"' not in page


def test_a_plugin_not_switched_on_is_not_found_and_says_who_can_switch_it_on(project, signed_in):
    page = text_of(in_chinese(signed_in(project, "editor")).get("/create/no_such_plugin/"))
    assert "<h1>插件不可用</h1>" in page and "项目所有者可以在设置中启用它" in page


def test_a_page_the_role_does_not_open_is_forbidden_in_the_layout_naming_the_role_and_where_it_opens(
        project, signed_in):
    viewer = signed_in(project, "viewer")
    elsewhere = ProjectFactory(name="Autumn review", slug="zz-autumn")
    MembershipFactory(project=elsewhere, user=viewer.user, role="reviewer")
    viewer.post("/project/", {"project": project.slug})
    response = viewer.get("/review/")
    page = text_of(response)
    assert response.status_code == 403 and in_layout(page) and "<h1>Not allowed</h1>" in page
    assert f"Your role in the project “{project.name}” (viewer) does not open this page." in page
    assert f'name="project" value="{elsewhere.slug}"' in page and 'name="next" value="/review/"' in page
    page = text_of(in_chinese(viewer).get("/settings/"))  # an owner's page: no project of theirs opens it
    assert "<h1>无权访问</h1>" in page and f"您在项目“{project.name}”中的角色（查看者）无权打开此页面" in page
    assert "switch-to" not in page


def test_a_form_sent_from_a_stale_page_is_refused_in_the_layout_with_what_to_do(project, member):
    user = member(project, "editor")
    stale = Client(enforce_csrf_checks=True)
    stale.force_login(user)
    response = stale.post("/project/", {"project": project.slug})  # no token: as after a sign-out and in again
    page = text_of(response)
    assert response.status_code == 403 and in_layout(page) and "<h1>This form could not be sent</h1>" in page
    assert "Nothing was saved. Go back, reload the page and send the form again" in page
    stale.cookies["django_language"] = "zh-hans"
    page = text_of(stale.post("/project/", {"project": project.slug}))
    assert "<h1>此表单未能提交</h1>" in page and "请返回、刷新页面后重新提交" in page

    signed_out = Client(enforce_csrf_checks=True)
    response = signed_out.post("/login/", {"username": user.username, "password": "x"})
    assert response.status_code == 403 and ">Sign in</a>" in text_of(response)


def test_a_server_error_is_a_dashboard_page_and_django_s_plain_one_if_that_fails(project, signed_in, monkeypatch):
    from atelier_frontend import error_pages, usage

    def broken(project):
        raise RuntimeError("a bug")

    monkeypatch.setattr(usage, "summary", broken)
    viewer = signed_in(project, "viewer")
    viewer.raise_request_exception = False
    response = viewer.get("/usage/")
    page = text_of(response)
    assert response.status_code == 500 and in_layout(page) and "<h1>Something went wrong on our side</h1>" in page
    assert "a bug" not in page
    assert "<h1>系统出错了</h1>" in text_of(in_chinese(viewer).get("/usage/"))

    monkeypatch.setattr(error_pages, "_error_page", broken)
    response = viewer.get("/usage/")
    assert response.status_code == 500 and "topbar" not in text_of(response)


def test_a_fetched_part_gets_the_message_without_a_second_layout(project, signed_in):
    """The review queue puts the panel it fetches into its page: a whole page with its header does not belong there."""
    response = signed_in(project, "reviewer").get("/review/items/999999/", HTTP_SEC_FETCH_DEST="empty")
    page = text_of(response)
    assert response.status_code == 404 and 'id="error-page"' in page and "topbar" not in page and "<html" not in page


def test_the_apis_keep_their_json_errors(project, signed_in):
    client = signed_in(project, "owner")
    for path, code in (("/api/v1/no-such-thing/", "not_found"), ("/v1/no-such-thing", "unknown_url")):
        response = client.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json()["error"]["code"] == code

    from atelier_frontend import error_pages

    request = RequestFactory().get("/api/v1/jobs/")
    refused = error_pages.permission_denied(request)
    assert refused.status_code == 403 and refused["Content-Type"] == "application/json"
    assert error_pages.csrf_failure(RequestFactory().post("/v1/chat/completions"), "no token").status_code == 403
    failed = error_pages.server_error(RequestFactory().get("/api/v1/jobs/"))
    assert failed.status_code == 500 and json.loads(failed.content)["error"]["code"] == "internal_error"
