"""Who may call what: every endpoint × every role × every single-scope API key × no credentials.

MATRIX is the documentation: for each endpoint (enumerated from the URLconf, so a new endpoint
without a row fails ``test_every_endpoint_has_a_row``) the scope an API key needs and the roles of
signed-in members that may call it. Each row is then called by every principal:

- allowed: anything but 401/403 (a 400 for the empty body is fine: the door opened);
- denied: 403 with the error envelope, code ``permission_denied``;
- anonymous: 401 ``not_authenticated``.

Members choose the project with the ``X-Atelier-Project`` header (``api/access.py``). Each call runs
in a savepoint that is rolled back, so a DELETE or a claim does not change what the next principal sees.
"""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from atelier_platform.accounts.roles import ROLE_CAPABILITIES, Capability, Role
from atelier_platform.accounts.services import issue_api_key
from tests.api.endpoints import api_endpoints, make_objects, url_for
from tests.factories import MembershipFactory, UserFactory

ALL = "owner editor reviewer viewer"
PUBLIC = None  # no credentials needed

# (method, path): (scope an API key needs, roles that may call it); "a b": both, "a|b": either
MATRIX: dict[tuple[str, str], tuple[str | None, str]] = {
    # --- jobs and outputs ---
    ("GET", "/api/v1/plugins/"):                                 ("jobs:read", ALL),
    ("GET", "/api/v1/jobs/"):                                    ("jobs:read", ALL),
    ("POST", "/api/v1/jobs/"):                                   ("jobs:write", "owner editor"),
    ("POST", "/api/v1/jobs/batch/"):                             ("jobs:write", "owner editor"),
    ("GET", "/api/v1/jobs/{pk}/"):                               ("jobs:read", ALL),
    ("POST", "/api/v1/jobs/{pk}/cancel/"):                       ("jobs:write", "owner editor"),
    # erasure is for good and reaches others' work (reviewers' decisions, other members' jobs): its own scope,
    # which only owners hold, never a default key's
    ("DELETE", "/api/v1/jobs/{pk}/"):                            ("content:erase", "owner"),
    ("GET", "/api/v1/outputs/"):                                 ("jobs:read", ALL),
    ("GET", "/api/v1/outputs/{pk}/"):                            ("jobs:read", ALL),
    ("GET", "/api/v1/outputs/{output_id}/files/{file_id}/"):     ("jobs:read", ALL),
    ("GET", "/api/v1/conversations/"):                           ("jobs:read", ALL),
    ("GET", "/api/v1/conversations/{pk}/"):                      ("jobs:read", ALL),
    ("DELETE", "/api/v1/conversations/{pk}/"):                   ("content:erase", "owner"),
    ("GET", "/api/v1/conversations/{conversation_id}/messages/"): ("jobs:read", ALL),
    ("GET", "/api/v1/usage/"):                                   ("jobs:read", ALL),
    ("GET", "/api/v1/usage/quota/"):                             ("jobs:read", ALL),
    # --- knowledge base ---
    ("GET", "/api/v1/knowledge/documents/"):                     ("jobs:read", ALL),
    ("POST", "/api/v1/knowledge/documents/"):                    ("admin", "owner"),
    ("GET", "/api/v1/knowledge/documents/{pk}/"):                ("jobs:read", ALL),
    ("DELETE", "/api/v1/knowledge/documents/{pk}/"):             ("admin", "owner"),
    ("POST", "/api/v1/knowledge/documents/{pk}/reindex/"):       ("admin", "owner"),
    # --- review ---
    ("GET", "/api/v1/reviews/"):                                 ("reviews:read", "owner reviewer"),
    ("GET", "/api/v1/reviews/{pk}/"):                            ("reviews:read", "owner reviewer"),
    ("GET", "/api/v1/reviews/metrics/"):                         ("reviews:read", "owner reviewer"),
    ("POST", "/api/v1/reviews/claim-next/"):                     ("reviews:write", "owner reviewer"),
    ("POST", "/api/v1/reviews/{pk}/claim/"):                     ("reviews:write", "owner reviewer"),
    ("POST", "/api/v1/reviews/{pk}/renew/"):                     ("reviews:write", "owner reviewer"),
    ("POST", "/api/v1/reviews/{pk}/release/"):                   ("reviews:write", "owner reviewer"),
    ("POST", "/api/v1/reviews/{pk}/decision/"):                  ("reviews:write", "owner reviewer"),
    # --- administration ---
    ("GET", "/api/v1/workers/"):                                 ("admin", "owner"),
    # a plugin's defaults may hold the brand's own voice, the versions its private fine-tunes: reading is admin too
    ("GET", "/api/v1/plugins/{plugin_id}/settings/"):            ("admin", "owner"),
    ("PATCH", "/api/v1/plugins/{plugin_id}/settings/"):          ("admin", "owner"),
    ("GET", "/api/v1/model-versions/"):                          ("admin", "owner"),
    ("GET", "/api/v1/audit/"):                                   ("admin", "owner"),
    ("GET", "/api/v1/safety/policy/"):                           ("admin", "owner"),
    ("PATCH", "/api/v1/safety/policy/"):                         ("admin", "owner"),
    ("GET", "/api/v1/safety/blocklist/"):                        ("admin", "owner"),
    ("POST", "/api/v1/safety/blocklist/"):                       ("admin", "owner"),
    ("POST", "/api/v1/safety/blocklist/remove/"):               ("admin", "owner"),
    ("GET", "/api/v1/safety/allowlist/"):                        ("admin", "owner"),
    ("POST", "/api/v1/safety/allowlist/"):                       ("admin", "owner"),
    ("POST", "/api/v1/safety/allowlist/remove/"):               ("admin", "owner"),
    ("GET", "/api/v1/api-keys/"):                                ("admin", "owner"),
    ("POST", "/api/v1/api-keys/"):                               ("admin", "owner"),
    ("GET", "/api/v1/api-keys/{pk}/"):                           ("admin", "owner"),
    ("PATCH", "/api/v1/api-keys/{pk}/"):                         ("admin", "owner"),
    ("DELETE", "/api/v1/api-keys/{pk}/"):                        ("admin", "owner"),
    ("POST", "/api/v1/api-keys/{pk}/revoke/"):                   ("admin", "owner"),
    ("GET", "/api/v1/members/"):                                 ("admin", "owner"),
    ("POST", "/api/v1/members/"):                                ("admin", "owner"),
    ("GET", "/api/v1/members/{pk}/"):                            ("admin", "owner"),
    ("PATCH", "/api/v1/members/{pk}/"):                          ("admin", "owner"),
    ("DELETE", "/api/v1/members/{pk}/"):                         ("admin", "owner"),
    ("GET", "/api/v1/invitations/"):                             ("admin", "owner"),
    ("POST", "/api/v1/invitations/"):                            ("admin", "owner"),
    ("GET", "/api/v1/invitations/{pk}/"):                        ("admin", "owner"),
    ("POST", "/api/v1/invitations/{pk}/revoke/"):                ("admin", "owner"),
    # --- webhooks ---
    ("GET", "/api/v1/webhooks/"):                                ("webhooks:manage", "owner"),
    ("POST", "/api/v1/webhooks/"):                               ("webhooks:manage", "owner"),
    ("GET", "/api/v1/webhooks/{pk}/"):                           ("webhooks:manage", "owner"),
    ("PATCH", "/api/v1/webhooks/{pk}/"):                         ("webhooks:manage", "owner"),
    ("DELETE", "/api/v1/webhooks/{pk}/"):                        ("webhooks:manage", "owner"),
    ("POST", "/api/v1/webhooks/{pk}/rotate-secret/"):            ("webhooks:manage", "owner"),
    ("POST", "/api/v1/webhooks/{pk}/test/"):                     ("webhooks:manage", "owner"),
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries/"):       ("webhooks:manage", "owner"),
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries/{pk}/"):  ("webhooks:manage", "owner"),
    ("POST", "/api/v1/webhooks/{endpoint_id}/deliveries/{pk}/retry/"): ("webhooks:manage", "owner"),
    # --- evaluation ---
    ("GET", "/api/v1/evaluation/reference-sets/"):               ("jobs:read", ALL),
    ("POST", "/api/v1/evaluation/reference-sets/"):              ("admin", "owner"),
    ("POST", "/api/v1/evaluation/reference-sets/upload/"):       ("admin", "owner"),
    ("GET", "/api/v1/evaluation/reference-sets/{pk}/"):          ("jobs:read", ALL),
    ("PATCH", "/api/v1/evaluation/reference-sets/{pk}/"):        ("admin", "owner"),
    ("DELETE", "/api/v1/evaluation/reference-sets/{pk}/"):       ("admin", "owner"),
    ("GET", "/api/v1/evaluation/reference-sets/{pk}/images/{sha256}/"): ("jobs:read", ALL),
    ("GET", "/api/v1/evaluation/runs/"):                         ("jobs:read", ALL),
    # a run submits a job per case: both scopes (a key with admin alone is refused)
    ("POST", "/api/v1/evaluation/runs/"):                        ("admin jobs:write", "owner"),
    ("GET", "/api/v1/evaluation/runs/{pk}/"):                    ("jobs:read", ALL),
    ("POST", "/api/v1/evaluation/runs/{pk}/cancel/"):            ("admin", "owner"),
    ("GET", "/api/v1/evaluation/runs/{pk}/compare/"):            ("jobs:read", ALL),
    ("GET", "/api/v1/evaluation/schedules/"):                    ("jobs:read", ALL),
    # a watch starts runs, a job per case each: both scopes, as a start
    ("POST", "/api/v1/evaluation/schedules/"):                   ("admin jobs:write", "owner"),
    ("GET", "/api/v1/evaluation/schedules/{pk}/"):               ("jobs:read", ALL),
    ("PATCH", "/api/v1/evaluation/schedules/{pk}/"):             ("admin jobs:write", "owner"),
    ("DELETE", "/api/v1/evaluation/schedules/{pk}/"):            ("admin", "owner"),
    # --- exports in the background: the library's needs jobs:read, the audit log's admin (the view checks the kind
    # asked for, tests/api/test_export_jobs.py); a caller sees the exports it asked for ---
    ("GET", "/api/v1/exports/"):                                 ("jobs:read|admin", ALL),
    ("POST", "/api/v1/exports/"):                                ("jobs:read|admin", ALL),
    ("GET", "/api/v1/exports/{pk}/"):                            ("jobs:read|admin", ALL),
    ("GET", "/api/v1/exports/{pk}/download/"):                   ("jobs:read|admin", ALL),
    ("POST", "/api/v1/exports/{pk}/cancel/"):                    ("jobs:read|admin", ALL),
    # --- the contract itself: public ---
    ("GET", "/api/v1/schema/"):                                  (PUBLIC, ALL),
    ("GET", "/api/v1/docs/"):                                    (PUBLIC, ALL),
    # --- OpenAI-compatible (errors in OpenAI's shape, with the same code/message/details) ---
    ("GET", "/v1/models"):                                       ("jobs:read", ALL),
    ("GET", "/v1/models/{model_id}"):                            ("jobs:read", ALL),
    ("POST", "/v1/chat/completions"):                            ("jobs:write", "owner editor"),
    ("POST", "/v1/images/generations"):                          ("jobs:write", "owner editor"),
    ("POST", "/v1/responses"):                                   ("jobs:write", "owner editor"),
    ("GET", "/v1/responses/{response_id}"):                      ("jobs:read", ALL),
    ("DELETE", "/v1/responses/{response_id}"):                   ("content:erase", "owner"),
    ("GET", "/v1/responses/{response_id}/input_items"):          ("jobs:read", ALL),
    ("POST", "/v1/responses/{response_id}/cancel"):              ("jobs:write", "owner editor"),
}

SCOPES = list(Capability.values)
ROLES = list(Role.values)


def holds(capabilities, scope: str) -> bool:
    """Whether ``capabilities`` open a row's ``scope``: every capability of one of its alternatives."""
    return any(set(option.split()) <= set(capabilities) for option in scope.split("|"))


# Bodies are empty (a 400 proves the door opened) except where an empty body is refused with 403 for
# another reason: a new key gets jobs:read and jobs:write by default, which an admin-only key cannot grant.
BODIES = {("POST", "/api/v1/api-keys/"): {"name": "matrix", "scopes": ["admin"]}}

# Past the door, a rule about the object itself may refuse with 403 and a code of its own (not permission_denied):
# a caller acts only on a member (or revokes an invitation) whose role's capabilities it holds all of
# (``accounts.members``), and the member and the invitation the rows name are a viewer's, whose jobs:read a key with
# admin alone lacks. An owner sees every export of the project but downloads only the ones it asked for
# (``exports.services.ExportNotYours``), and the row's export is one API key's: every other owner is refused its file.
OBJECT_REFUSALS = {("DELETE", "/api/v1/members/{pk}/"): "role_not_grantable",
                   ("POST", "/api/v1/invitations/{pk}/revoke/"): "role_not_grantable",
                   ("GET", "/api/v1/exports/{pk}/download/"): "export_not_yours"}


class _Rollback(Exception):
    pass


def call(client: APIClient, method: str, url: str, payload: dict | None = None):
    """One request in a savepoint that is rolled back: a DELETE or a claim leaves no trace for the next caller."""
    if method == "GET":
        return client.get(url)  # nothing to undo
    body = {"data": json.dumps(payload or {}), "content_type": "application/json"} if method in ("POST", "PATCH", "PUT") else {}
    response = None
    try:
        with transaction.atomic():
            response = client.generic(method, url, **body)
            raise _Rollback
    except _Rollback:
        pass
    return response


def refusal(response, status: int, code: str) -> str | None:
    """None if ``response`` is the expected refusal in the error envelope, else what is wrong with it."""
    if response.status_code != status:
        return f"expected {status}, got {response.status_code}: {response.content[:200]!r}"
    error = response.json().get("error") or {}
    # /api/ answers {"code", "message", "details"}; /v1/ OpenAI's {"message", "type", "param", "code"}.
    shape = {"code", "message", "details"} if response.wsgi_request.path.startswith("/api/") else {"code", "message", "type"}
    if not shape <= set(error) or error.get("code") != code or not error.get("message"):
        return f"expected the error envelope with code {code!r}, got {response.content[:200]!r}"
    return None


def test_every_endpoint_has_a_row(db):
    found = api_endpoints()
    missing = sorted(found - set(MATRIX))
    stale = sorted(set(MATRIX) - found)
    assert not missing, f"endpoints without a row in MATRIX (say who may call them): {missing}"
    assert not stale, f"rows in MATRIX for endpoints that no longer exist: {stale}"


@pytest.mark.parametrize("row", sorted(MATRIX), ids=lambda row: f"{row[0]} {row[1]}")
def test_table_agrees_with_role_capabilities(row):
    """The roles column is what ROLE_CAPABILITIES grants: the table and the code say the same thing."""
    scope, roles = MATRIX[row]
    if scope is PUBLIC:
        return
    assert set(roles.split()) == {role for role in ROLES if holds(ROLE_CAPABILITIES[role], scope)}


@pytest.fixture
def principals(project):
    """(name, client, allowed-for-this-scope) for every role and every single-scope key; the project holds data."""
    made = []
    for role in ROLES:
        client = APIClient()
        client.force_login(MembershipFactory(project=project, user=UserFactory(), role=role).user)
        client.credentials(HTTP_X_ATELIER_PROJECT=project.slug)
        made.append((f"role {role}", client, lambda scope, roles, role=role: role in roles.split()))
    for scope in SCOPES:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project, scopes=[scope]).raw}")
        made.append((f"key with {scope}", client, lambda needed, roles, scope=scope: holds({scope}, needed)))
    # a row may need several scopes at once ("admin jobs:write"): a key holding just those
    both = APIClient()
    both.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project, scopes=['admin', 'jobs:write']).raw}")
    made.append(("key with admin and jobs:write", both, lambda needed, roles: holds({"admin", "jobs:write"}, needed)))
    return made


@pytest.mark.django_db
def test_matrix(project, principals):
    """Every row, every principal; all disagreements are reported together."""
    objects = make_objects(project)
    problems = []
    for method, template in sorted(MATRIX):
        scope, roles = MATRIX[(method, template)]
        url = url_for(template, objects)
        for who, client, allowed in principals:
            response = call(client, method, url, BODIES.get((method, template)))
            if scope is PUBLIC or allowed(scope, roles):
                if (method, template) in OBJECT_REFUSALS and not refusal(response, 403, OBJECT_REFUSALS[(method, template)]):
                    continue
                if response.status_code in (401, 403) or response.status_code >= 500:
                    problems.append(f"{who} may {method} {template}: got {response.status_code} {response.content[:200]!r}")
            elif wrong := refusal(response, 403, "permission_denied"):
                problems.append(f"{who} must be refused {method} {template}: {wrong}")
        anonymous = call(APIClient(), method, url)
        if scope is PUBLIC:
            if anonymous.status_code != 200:
                problems.append(f"anonymous {method} {template}: got {anonymous.status_code}")
        elif wrong := refusal(anonymous, 401, "not_authenticated"):
            problems.append(f"anonymous {method} {template}: {wrong}")
    assert not problems, "\n".join(problems)


def routes() -> dict[str, set[str]]:
    """Each path of MATRIX with the methods it has."""
    found: dict[str, set[str]] = {}
    for method, template in MATRIX:
        found.setdefault(template, set()).add(method)
    return found


@pytest.mark.django_db
def test_a_method_a_route_lacks_is_405_for_every_caller_with_credentials(project, principals):
    """DELETE /safety/policy/ answered 403 "not open to API callers" (the capability check ran before DRF's
    dispatch could say 405) while its Allow header said GET, PATCH, HEAD, OPTIONS. A method no one may call
    is 405 ``method_not_allowed``, whoever asks; without credentials, 401 comes first."""
    objects = make_objects(project)
    problems = []
    for template, methods in sorted(routes().items()):
        if MATRIX[(min(methods), template)][0] is PUBLIC:
            continue
        url = url_for(template, objects)
        lacking = {"GET", "POST", "PUT", "PATCH", "DELETE"} - methods
        if "GET" not in methods:
            lacking.add("HEAD")
        for method in sorted(lacking):
            for who, client, _allowed in principals:
                response = call(client, method, url)
                if method == "HEAD":  # no body to hold the envelope
                    wrong = None if response.status_code == 405 else f"expected 405, got {response.status_code}"
                else:
                    wrong = refusal(response, 405, "method_not_allowed")
                if wrong:
                    problems.append(f"{who} {method} {template}: {wrong}")
                elif method in response["Allow"].split(", ") or not methods <= set(response["Allow"].split(", ")):
                    problems.append(f"{who} {method} {template}: Allow says {response['Allow']!r}")
            if method != "HEAD":
                if wrong := refusal(call(APIClient(), method, url), 401, "not_authenticated"):
                    problems.append(f"anonymous {method} {template}: {wrong}")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_options_describes_a_route_to_whoever_may_call_one_of_its_methods(project, principals):
    """OPTIONS answered 403 everywhere ("not open to API callers") while every answer's Allow header offered it.
    It now answers the route's metadata to a caller who may call at least one of the route's methods, and is
    refused (403) to others, as those methods are: it never tells a caller more than what it may call."""
    objects = make_objects(project)
    problems = []
    for template, methods in sorted(routes().items()):
        rows = [MATRIX[(method, template)] for method in sorted(methods)]
        if rows[0][0] is PUBLIC:
            continue
        url = url_for(template, objects)
        for who, client, allowed in principals:
            response = call(client, "OPTIONS", url)
            if any(allowed(scope, roles) for scope, roles in rows):
                if response.status_code != 200:
                    problems.append(f"{who} may OPTIONS {template}: got {response.status_code} {response.content[:200]!r}")
                elif set(response.json()) != {"name", "description", "renders", "parses", "schema"} or \
                        "OPTIONS" not in response["Allow"]:
                    problems.append(f"{who} OPTIONS {template}: {response.content[:200]!r}, Allow {response['Allow']!r}")
            elif wrong := refusal(response, 403, "permission_denied"):
                problems.append(f"{who} must be refused OPTIONS {template}: {wrong}")
        if wrong := refusal(call(APIClient(), "OPTIONS", url), 401, "not_authenticated"):
            problems.append(f"anonymous OPTIONS {template}: {wrong}")
    assert not problems, "\n".join(problems)


@pytest.mark.django_db
def test_head_needs_what_get_needs(project, principals):
    objects = make_objects(project)
    problems = []
    for (method, template), (scope, roles) in sorted(MATRIX.items()):
        if method != "GET" or scope is PUBLIC:
            continue
        url = url_for(template, objects)
        for who, client, allowed in principals:
            status = call(client, "HEAD", url).status_code
            if (status == 403 and ("GET", template) in OBJECT_REFUSALS
                    and not refusal(call(client, "GET", url), 403, OBJECT_REFUSALS[("GET", template)])):
                continue  # the object's own refusal, as its GET answers it (a HEAD has no body to say so)
            if allowed(scope, roles) != (status not in (401, 403)) or status >= 500:
                problems.append(f"{who} HEAD {template}: got {status}")
        if call(APIClient(), "HEAD", url).status_code != 401:
            problems.append(f"anonymous HEAD {template}: not 401")
    assert not problems, "\n".join(problems)
