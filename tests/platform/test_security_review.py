"""A security review's findings, each as an attacker or a user meets it: a plugin's file that would run script in
the dashboard's origin, pages without a Content-Security-Policy, password guessing on the sign-in forms, a
pickle planted in Redis, blocklist terms read from the review queue, and self-approval through one's own key."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from atelier_platform.accounts.roles import Role
from atelier_platform.accounts.services import create_api_key
from atelier_platform.jobs.models import Output, OutputFile, ReviewState
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_platform.moderation.models import ReviewItem
from tests.api.helpers import build_job, build_output
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "frontend" / "atelier_frontend" / "templates"


def _file(output: Output, media_type: str, name: str, data: bytes) -> OutputFile:
    stored = OutputFile(output=output, role="primary", media_type=media_type, size=len(data))
    stored.file.save(name, ContentFile(data), save=True)
    return stored


def _download(api, stored: OutputFile):
    return api.get(f"/api/v1/outputs/{stored.output_id}/files/{stored.pk}/")


# --- generated files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("media_type, name, data", [
    ("image/svg+xml", "x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="fetch(\'/api/v1/api-keys/\')"/>'),
    ("text/html", "x.html", b"<script>fetch('/api/v1/api-keys/', {method: 'POST'})</script>"),
])
def test_a_plugins_svg_or_html_file_never_runs_in_the_dashboards_origin(project, api, media_type, name, data):
    """Served inline with its own type, a file a plugin made opened in a signed-in owner's browser as a page of
    the dashboard's origin: its script could read the session's API and mint keys."""
    stored = _file(build_output(build_job(project)), media_type, name, data)
    response = _download(api, stored)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"] and "default-src 'none'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_picture_is_still_shown_inline(project, api):
    stored = _file(build_output(build_job(project)), "image/png", "0.png", b"\x89PNG")
    response = _download(api, stored)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline;")


def test_a_media_type_that_is_no_media_type_is_served_as_bytes(project, api):
    """A plugin's media type with a line break in it made the answer a 500 (a header may not hold one)."""
    stored = _file(build_output(build_job(project)), "text/html\r\nSet-Cookie: sessionid=planted", "x.html", b"<b>")
    response = _download(api, stored)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert "sessionid" not in response.cookies


# --- the dashboard's pages ---------------------------------------------------------------------------------

def _directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def test_dashboard_pages_run_no_inline_script_and_cannot_be_framed(project):
    user = MembershipFactory(project=project, user=UserFactory(), role=Role.OWNER).user
    client = Client()
    pages = [client.get("/login/")]
    client.force_login(user)
    pages += [client.get(path) for path in ("/jobs/", "/settings/", "/usage/")]
    for response in pages:
        assert response.status_code == 200
        policy = _directives(response["Content-Security-Policy"])
        assert policy["script-src"][0] == "'self'"
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(policy["script-src"])
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        assert response["X-Frame-Options"] == "DENY"


def test_the_templates_need_no_inline_script_and_the_policy_allows_none(client):
    """The policy must not break the dashboard: no template has an ``on...=`` handler (app.js does what they did)
    or a ``<script>`` with code in it (data blocks, json_script, run nothing), and the policy runs only /static/'s
    scripts. A handler added to a template would be blocked by the browser: list it in ``INLINE_HANDLERS``."""
    from atelier_platform.security import INLINE_HANDLERS

    script_src = _directives(client.get("/login/")["Content-Security-Policy"])["script-src"]
    sources = "".join(path.read_text() for path in TEMPLATES.rglob("*.html"))
    assert sorted(set(re.findall(r'\son[a-z]+="([^"]*)"', sources))) == sorted(INLINE_HANDLERS)
    assert not re.findall(r"<script(?![^>]*\ssrc=)[^>]*>\s*\S", sources)
    assert "'unsafe-inline'" not in script_src
    if not INLINE_HANDLERS:
        assert script_src == ["'self'"]


def test_the_api_docs_page_holds_no_inline_script(client):
    page = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in page
    assert not re.findall(r"<script(?![^>]*\ssrc=)[^>]*>\s*\S", page)
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


# --- password guessing ---------------------------------------------------------------------------------------

@pytest.fixture
def guessed_user(db):
    return UserFactory(username=f"victim-{uuid.uuid4().hex[:8]}")


def _address() -> str:
    """An address of its own (the counts live in the shared cache, across tests and runs)."""
    word = uuid.uuid4().hex
    return f"2001:db8::{word[:4]}:{word[4:8]}:{word[8:12]}"


def test_a_username_guessed_at_is_refused_even_with_the_right_password(guessed_user, atelier_config):
    atelier_config(sign_in_failures_per_minute=3, sign_in_failures_per_minute_per_address=0)
    guesser = Client(REMOTE_ADDR=_address())
    for guess in ("123456", "password", "letmein"):
        assert guesser.post("/login/", {"username": guessed_user.username, "password": guess}).status_code == 200
    refused = guesser.post("/login/", {"username": guessed_user.username, "password": "correct horse battery staple"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "_auth_user_id" not in guesser.session
    # the admin's form is the same door
    assert guesser.post("/admin/login/", {"username": guessed_user.username.upper(),
                                          "password": "correct horse battery staple"}).status_code == 429
    # another account is not held back by this one's failures
    other = UserFactory(username=f"bystander-{uuid.uuid4().hex[:8]}")
    assert guesser.post("/login/", {"username": other.username, "password": "correct horse battery staple"}).status_code == 302


def test_one_address_trying_many_usernames_is_refused(atelier_config, db):
    atelier_config(sign_in_failures_per_minute=0, sign_in_failures_per_minute_per_address=4)
    guesser = Client(REMOTE_ADDR=_address())
    for n in range(4):
        assert guesser.post("/login/", {"username": f"nobody-{uuid.uuid4().hex}", "password": "x"}).status_code == 200
    user = UserFactory(username=f"stuffed-{uuid.uuid4().hex[:8]}")
    assert guesser.post("/login/", {"username": user.username, "password": "correct horse battery staple"}).status_code == 429
    elsewhere = Client(REMOTE_ADDR=_address())
    assert elsewhere.post("/login/", {"username": user.username, "password": "correct horse battery staple"}).status_code == 302


# --- the shared cache -----------------------------------------------------------------------------------------

PLANTED: list[str] = []


def _planted_code_ran() -> None:
    PLANTED.append("ran")


class _Payload:
    def __reduce__(self):  # unpickling calls this module's function: what an attacker's os.system would be
        return (_planted_code_ran, ())


def test_a_pickle_planted_in_redis_is_never_unpickled(settings):
    """Django's Redis cache unpickled what it read: one key written to Redis ran code in every web process."""
    import pickle

    from django.core.cache import cache

    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("the cache is Redis only with REDIS_URL (the embedded one is a folder of this user's, mode 0700)")
    key = f"security-review:{uuid.uuid4().hex}"
    client = cache._cache.get_client(key, write=True)
    client.set(cache.make_and_validate_key(key), pickle.dumps(_Payload()), ex=60)
    PLANTED.clear()
    assert cache.get(key) is None and PLANTED == []
    cache.set(key, {"seconds": 1.5})  # what the platform stores still reads back
    assert cache.get(key) == {"seconds": 1.5}
    cache.set(key + ":n", 1)  # counters stay plain numbers, which Redis's INCR counts
    assert cache.incr(key + ":n") == 2 and cache.get(key + ":n") == 2


# --- the review queue -------------------------------------------------------------------------------------------

def test_the_review_queue_never_names_a_blocklist_term(project, make_key, client_for):
    """The jobs API hides which blocklist term matched (the list is the project's; a prompt writer who read it
    could write around it), but the review queue showed it whole to every reviews:read caller: editors too."""
    finding = {"check": "blocklist", "category": "illicit", "field": "input.text", "score": 1.0,
               "evidence": [{"start": 13, "end": 23, "excerpt": "Rival Corp", "detail": r"regex 'rival\s*co(rp)?'"}]}
    report = {"decision": "review", "flagged": ["illicit"], "findings": [finding]}
    job = build_job(project, input_screening=report)
    output = build_output(job, content={"text": "compare with Rival Corp"})
    Output.objects.filter(pk=output.pk).update(safety={**report, "findings": [{**finding, "field": "content.text"}]})
    item = ReviewItem.objects.create(output=output, project=project, flagged=True, categories=["illicit"])
    editor_key = client_for(make_key(project, ["jobs:read", "jobs:write", "reviews:read"]).raw)
    for url in (f"/api/v1/reviews/{item.pk}/", "/api/v1/reviews/?state=all"):
        response = editor_key.get(url)
        assert response.status_code == 200
        assert "co(rp)?" not in response.content.decode()
    shown = editor_key.get(f"/api/v1/reviews/{item.pk}/").json()
    assert shown["output"]["safety"]["findings"][0]["evidence"] == [{"start": 13, "end": 23, "excerpt": "Rival Corp"}]
    assert shown["input_screening"]["findings"][0]["evidence"][0]["excerpt"] == "Rival Corp"


# --- self-approval ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("submits, approves", [("person", "own key"), ("own key", "person")])
def test_an_owner_cannot_approve_their_own_job_through_a_key_they_made(project, client_for, submits, approves):
    """With "forbid self-approval" on, an owner's own job was refused to them signed in, and approved when they
    decided it with an API key they had made themselves (or the other way round)."""
    from rest_framework.test import APIClient

    owner = MembershipFactory(project=project, user=UserFactory(), role=Role.OWNER).user
    everything = frozenset({"jobs:read", "jobs:write", "reviews:read", "reviews:write"})
    key = create_api_key(project, f"user:{owner.pk}", granted_by=everything, scopes=sorted(everything), created_by=owner)
    signed_in = APIClient()
    signed_in.force_login(owner)
    signed_in.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
    with_key = client_for(key.raw)
    request = JobRequest(plugin_id="reverse_text", input={"text": "my own words"}, params={})
    job = (submit_job(project, request, submitted_by=owner) if submits == "person"
           else submit_job(project, request, api_key=key.api_key)).job
    item = ReviewItem.objects.create(output=build_output(job), project=project)
    reviewer = with_key if approves == "own key" else signed_in
    assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    response = reviewer.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "approve"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "own_content"
    assert Output.objects.get(pk=item.output_id).review_state == ReviewState.PENDING


def test_another_members_key_may_approve(project, client_for):
    """The control: a job of one owner is approved by another owner's key."""
    author, colleague = (MembershipFactory(project=project, user=UserFactory(), role=Role.OWNER).user for _ in range(2))
    scopes = ["reviews:read", "reviews:write"]
    key = create_api_key(project, f"user:{colleague.pk}", granted_by=frozenset(scopes), scopes=scopes, created_by=colleague)
    job = submit_job(project, JobRequest(plugin_id="reverse_text", input={"text": "words"}, params={}),
                     submitted_by=author).job
    item = ReviewItem.objects.create(output=build_output(job), project=project)
    api = client_for(key.raw)
    assert api.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
    assert api.post(f"/api/v1/reviews/{item.pk}/decision/", {"action": "approve"}, format="json").status_code == 200
    assert Output.objects.get(pk=item.output_id).review_state == ReviewState.APPROVED
