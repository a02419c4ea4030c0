"""The admin pages, through the Flask test client: who may see them, the
create form, the secret shown once in the answer to the form, forms that
cannot be submitted twice, revoke and rotate, and the overview."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask import request
from flask import session
from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer
from helpers import make_app
from jinja2 import DictLoader

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.formids import KEPT as FORM_IDS_KEPT
from flask_accesstokens.formids import SESSION_KEY as FORM_IDS_KEY
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import utcnow

REPO = "/settings/repositories/acme/api/access-tokens"
PROJECT = "/settings/workspaces/acme/projects/API/access-tokens"
WORKSPACE = "/settings/workspaces/acme/access-tokens"
#: Who administers each workspace in this test app.
ADMINS = {"acme": {"alice"}, "hobby": {"alice"}}


def make_admin_app(database_uri: str, **config: Any) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    """The test host app with the admin pages at /settings, a login route,
    and "free" workspaces that may only hold repository tokens."""
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_ADMIN_URL_PREFIX="/settings", **config)

    @app.get("/test-login")
    def login() -> str:
        session["user"] = request.args["user"]
        return "signed in"

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = session.get("user")
        return user if user in ADMINS.get(resource.workspace, ()) else None

    @tokens.allowed_token_types_loader
    def plan(workspace: str) -> tuple[str, ...]:
        if workspace == "acme":
            return ("repository", "project", "workspace")
        return ("repository",)

    return app, db, tokens


@contextmanager
def running(app: Flask, db: SQLAlchemy) -> Iterator[None]:
    """An app context for the test; afterwards, once the request session has
    let go of its connection, close every connection the app opened."""
    with app.app_context():
        yield
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


@pytest.fixture
def admin_parts(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    parts = make_admin_app(database_uri)
    with running(parts[0], parts[1]):
        yield parts


@pytest.fixture
def admin_app(admin_parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> Flask:
    return admin_parts[0]


@pytest.fixture
def tokens(admin_parts: tuple[Flask, SQLAlchemy, AccessTokens]) -> AccessTokens:
    return admin_parts[2]


@pytest.fixture
def alice(admin_app: Flask) -> Any:
    client = admin_app.test_client()
    assert client.get("/test-login?user=alice").status_code == 200
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form without a CSRF token"
    return match.group(1)


def form_id_of(html: str) -> str:
    match = re.search(r'name="form_id" value="([^"]+)"', html)
    assert match, "form without a one-time form id"
    return match.group(1)


def create_form(client: Any, url: str = REPO, **fields: Any) -> dict[str, Any]:
    """What a browser would send for the create form, as opened just now."""
    form = client.get(f"{url}/new")
    assert form.status_code == 200
    data = {
        "csrf_token": csrf_of(form.text),
        "form_id": form_id_of(form.text),
        "name": "CI",
        "scopes": ["repository"],
    }
    data.update(fields)
    return data


def create(client: Any, url: str = REPO, **fields: Any) -> Any:
    """Fill in and submit the create form like a browser would."""
    return client.post(f"{url}/new", data=create_form(client, url, **fields))


def rotate_form(client: Any, token_id: str, url: str = REPO) -> dict[str, str]:
    confirm = client.get(f"{url}/{token_id}/rotate")
    assert confirm.status_code == 200
    return {"csrf_token": csrf_of(confirm.text), "form_id": form_id_of(confirm.text)}


def session_cookie(client: Any, app: Flask) -> tuple[str, dict[str, Any]]:
    """The session cookie as the browser holds it, and what it decodes to."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return cookie.value, serializer.loads(cookie.value)


def assert_nowhere_in(response: Any, secret: str) -> None:
    assert secret not in response.get_data(as_text=True)
    assert all(secret not in value for _, value in response.headers.items())


def secret_of(html: str) -> str | None:
    match = re.search(r'<code id="token-secret"[^>]*>([^<]+)</code>', html)
    return match.group(1) if match else None


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'<tr id="token-([^"]+)"', html))


# -- who may manage -------------------------------------------------------------


@pytest.mark.parametrize("url", [REPO, PROJECT, WORKSPACE, f"{WORKSPACE}/all", f"{REPO}/new"])
def test_strangers_are_refused(admin_app: Flask, url: str) -> None:
    anonymous = admin_app.test_client()
    assert anonymous.get(url).status_code == 403
    bob = admin_app.test_client()
    bob.get("/test-login?user=bob")
    response = bob.get(url)
    assert response.status_code == 403
    assert "permission to manage the access tokens" in response.text


def test_an_access_token_never_manages_tokens(alice: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", scopes=["repository:admin", "account"])
    form = alice.get(f"{REPO}/new")
    data = {"csrf_token": csrf_of(form.text), "name": "x", "scopes": ["repository"]}
    for headers in (bearer(new.secret), basic(new.secret), bearer("bbat_garbage")):
        # Even with a signed-in admin's session cookie alongside.
        assert alice.get(REPO, headers=headers).status_code == 403
        assert alice.post(f"{REPO}/new", data=data, headers=headers).status_code == 403
    assert tokens.list_tokens("acme", repository="api") == []


@pytest.mark.parametrize("url", [REPO, f"{WORKSPACE}/all"])
def test_a_query_string_that_is_not_utf8_is_a_bad_request(alice: Any, url: str) -> None:
    # Raw bytes, as a server passes them on: Werkzeug cannot decode them.
    response = alice.get(url, environ_overrides={"QUERY_STRING": "page=\xff"})
    assert response.status_code == 400


def test_token_of_another_resource_is_not_found(alice: Any, tokens: AccessTokens) -> None:
    other = tokens.create_token(name="lib", workspace="acme", repository="lib", scopes=["pipeline"])
    for suffix in ("revoke", "rotate"):
        assert alice.get(f"{REPO}/{other.token.id}/{suffix}").status_code == 404
    token = csrf_of(alice.get(f"{REPO}/new").text)
    response = alice.post(f"{REPO}/{other.token.id}/revoke", data={"csrf_token": token})
    assert response.status_code == 404
    assert tokens.get_token(other.token.id).revoked_at is None  # type: ignore[union-attr]


# -- the list -----------------------------------------------------------------------


def test_list_shows_each_tokens_details(
    alice: Any, admin_app: Flask, admin_parts: Any, tokens: AccessTokens
) -> None:
    used = tokens.create_token(
        name="Deploy bot", workspace="acme", repository="api", scopes=["repository:write"],
        created_by="carol",
    )  # fmt: skip
    assert admin_app.test_client().get("/repositories/acme/api", headers=bearer(used.secret)).json
    revoked = tokens.create_token(
        name="Old", workspace="acme", repository="api", scopes=["webhook"]
    )
    tokens.revoke_token(revoked.token.id, revoked_by="alice")
    expired = tokens.create_token(
        name="Temp", workspace="acme", repository="api", scopes=["runner"],
        expires_at=utcnow() + timedelta(days=1),
    )  # fmt: skip
    db = admin_parts[1]
    db.session.get(AccessToken, expired.token.id).expires_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    tokens.create_token(name="Elsewhere", workspace="acme", repository="lib", scopes=["runner"])

    response = alice.get(REPO)
    assert response.status_code == 200
    html = response.text
    assert ids_in(html) == {used.token.id, revoked.token.id, expired.token.id}
    row = html.split(f'id="token-{used.token.id}"')[1].split("</tr>")[0]
    assert "Deploy bot" in row and "Repositories: Write" in row and "by carol" in row
    assert "from 127.0.0.1" in row  # last accessed, and from where
    assert "Active" in row and "Revoke" in row and "Rotate" in row
    row = html.split(f'id="token-{revoked.token.id}"')[1].split("</tr>")[0]
    assert "Revoked" in row and "by alice" in row and "Revoke</a>" not in row
    row = html.split(f'id="token-{expired.token.id}"')[1].split("</tr>")[0]
    assert "Expired" in row
    assert used.secret not in html


def test_list_is_paginated(alice: Any, tokens: AccessTokens) -> None:
    for i in range(51):
        tokens.create_token(name=f"t{i}", workspace="acme", repository="api", scopes=["runner"])
    first = alice.get(REPO).text
    second = alice.get(f"{REPO}?page=2").text
    assert len(ids_in(first)) == 50 and len(ids_in(second)) == 1
    assert 'rel="next"' in first and 'rel="prev"' in second


# -- the create form ----------------------------------------------------------------


def scope_boxes(html: str) -> list[str]:
    return re.findall(r'name="scopes" value="([^"]+)"', html)


def test_form_offers_only_what_the_type_may_hold(alice: Any) -> None:
    repository = scope_boxes(alice.get(f"{REPO}/new").text)
    project = scope_boxes(alice.get(f"{PROJECT}/new").text)
    workspace = scope_boxes(alice.get(f"{WORKSPACE}/new").text)
    assert "repository:write" in repository and "project" not in repository
    assert "account" not in repository
    assert "project" in project and "project:admin" not in project and "account" not in project
    assert {"project", "project:admin", "account"} <= set(workspace)


def test_form_groups_scopes_and_explains_implications(alice: Any) -> None:
    html = alice.get(f"{REPO}/new").text
    groups = re.findall(r"<h2>([^<]+)</h2>", html)
    assert groups == ["Repositories", "Pull requests", "Webhooks", "Pipelines", "Runners"]
    item = html.split('value="pullrequest:write"')[1].split("</li>")[0]
    assert "Includes" in item and "Pull requests: Read" in item and "Repositories: Write" in item


def test_create_shows_the_secret_in_its_answer_only(
    alice: Any, admin_app: Flask, tokens: AccessTokens
) -> None:
    response = create(alice, scopes=["repository:write"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    [token] = tokens.list_tokens("acme", repository="api")
    assert token.created_by == "alice" and token.scopes == ("repository:write",)
    secret = secret_of(response.text)
    assert secret is not None and secret.startswith("bbat_")
    assert "http://x-token-auth:&lt;token&gt;@localhost/acme/api.git" in response.text
    assert "(which include Repositories: Read)" in response.text
    assert "Authorization: Bearer &lt;token&gt;" in response.text
    assert all(secret not in value for _, value in response.headers.items())

    user = admin_app.test_client()
    assert user.get("/repositories/acme/api", headers=bearer(secret)).status_code == 200

    # No page shows it again; there is no page that could.
    for url in (
        REPO,
        f"{REPO}?notice=resubmitted",
        f"{REPO}/new",
        f"{REPO}/{token.id}/rotate",
        f"{REPO}/{token.id}/revoke",
        f"{WORKSPACE}/all",
    ):
        page = alice.get(url)
        assert page.status_code == 200
        assert_nowhere_in(page, secret)
    assert alice.get(f"{REPO}/{token.id}/secret").status_code == 404


def test_session_cookie_never_holds_the_secret(
    alice: Any, admin_app: Flask, tokens: AccessTokens
) -> None:
    created = create(alice)
    secret = secret_of(created.text)
    assert secret
    [token] = tokens.list_tokens("acme", repository="api")
    rotated = alice.post(f"{REPO}/{token.id}/rotate", data=rotate_form(alice, token.id))
    new_secret = secret_of(rotated.text)
    assert new_secret and new_secret != secret
    for response in (created, rotated):
        assert "Set-Cookie" in response.headers  # the form id was used up
        assert all(s not in response.headers["Set-Cookie"] for s in (secret, new_secret))
    raw, data = session_cookie(alice, admin_app)
    for value in (secret, new_secret):
        assert value not in raw
        assert value not in json.dumps(data)
    # What the pages keep there: a few signed random form ids, nothing else.
    assert set(data) <= {"user", "csrf_token", FORM_IDS_KEY}
    assert all(len(i) < 80 for i in data.get(FORM_IDS_KEY, []))


def test_resubmitting_create_makes_no_second_token(alice: Any, tokens: AccessTokens) -> None:
    data = create_form(alice)
    first = alice.post(f"{REPO}/new", data=data)
    secret = secret_of(first.text)
    assert first.status_code == 200 and secret

    # A reload of the answer, or back and forward, sends the same form again.
    again = alice.post(f"{REPO}/new", data=data)
    assert again.status_code == 303
    assert again.headers["Location"] == f"{REPO}?notice=resubmitted"
    assert len(tokens.list_tokens("acme", repository="api")) == 1
    listing = alice.get(again.headers["Location"])
    assert "This form was already submitted, so nothing new was created." in listing.text
    assert "if you lost it, rotate or revoke the token" in listing.text
    assert_nowhere_in(listing, secret)
    assert_nowhere_in(again, secret)


def test_form_without_an_open_form_id_creates_nothing(
    admin_app: Flask, alice: Any, tokens: AccessTokens
) -> None:
    data = create_form(alice)
    missing = {k: v for k, v in data.items() if k != "form_id"}
    # A form id the server never issued: a script posting the form. It is
    # told plainly that nothing was made, and where scripts should go.
    for fields in (
        missing,
        {**data, "form_id": "made-up"},
        {**data, "form_id": data["form_id"] + "x"},
    ):
        response = alice.post(f"{REPO}/new", data=fields)
        assert response.status_code == 400
        assert "Nothing was created" in response.text and "JSON API" in response.text
    assert tokens.list_tokens("acme", repository="api") == []
    # A form id belongs to the session that opened the form. (Dave's requests
    # get an app context of their own: Flask-WTF keeps the CSRF token in g.)
    ADMINS["acme"].add("dave")
    try:
        with admin_app.app_context():
            dave = admin_app.test_client()
            dave.get("/test-login?user=dave")
            mine = create_form(dave)
            response = dave.post(f"{REPO}/new", data={**mine, "form_id": data["form_id"]})
            assert response.status_code == 303
            assert dave.post(f"{REPO}/new", data=mine).status_code == 200  # his own works
    finally:
        ADMINS["acme"].discard("dave")
    assert len(tokens.list_tokens("acme", repository="api")) == 1
    assert alice.post(f"{REPO}/new", data=data).status_code == 200  # still open for alice


def test_only_the_latest_open_forms_are_kept(alice: Any, tokens: AccessTokens) -> None:
    forms = [create_form(alice, name=f"t{i}") for i in range(FORM_IDS_KEPT + 1)]
    with alice.session_transaction() as sess:
        assert len(sess[FORM_IDS_KEY]) == FORM_IDS_KEPT
    assert alice.post(f"{REPO}/new", data=forms[0]).status_code == 303  # forgotten
    assert alice.post(f"{REPO}/new", data=forms[1]).status_code == 200
    assert alice.post(f"{REPO}/new", data=forms[-1]).status_code == 200
    assert {t.name for t in tokens.list_tokens("acme", repository="api")} == {
        "t1",
        f"t{FORM_IDS_KEPT}",
    }


def test_post_without_csrf_token_is_refused(alice: Any, tokens: AccessTokens) -> None:
    alice.get(f"{REPO}/new")
    for data in ({}, {"csrf_token": "forged"}):
        response = alice.post(f"{REPO}/new", data={"name": "CI", "scopes": ["repository"], **data})
        assert response.status_code == 400
        assert "did not come from this site" in response.text
    assert tokens.list_tokens("acme", repository="api") == []


def test_csrf_token_of_another_session_is_refused(admin_app: Flask, alice: Any) -> None:
    stolen = csrf_of(alice.get(f"{REPO}/new").text)
    other = admin_app.test_client()
    other.get("/test-login?user=alice")
    response = other.post(
        f"{REPO}/new", data={"csrf_token": stolen, "name": "CI", "scopes": ["repository"]}
    )
    assert response.status_code == 400


def test_form_with_errors_comes_back_with_a_new_form_id(alice: Any, tokens: AccessTokens) -> None:
    data = create_form(alice, scopes=[])
    response = alice.post(f"{REPO}/new", data=data)
    assert response.status_code == 400
    fresh = form_id_of(response.text)
    assert fresh != data["form_id"]
    fixed = {**data, "scopes": ["repository"]}
    assert alice.post(f"{REPO}/new", data=fixed).status_code == 303  # used up
    assert tokens.list_tokens("acme", repository="api") == []
    assert alice.post(f"{REPO}/new", data={**fixed, "form_id": fresh}).status_code == 200
    assert len(tokens.list_tokens("acme", repository="api")) == 1


def test_errors_are_shown_inline_and_values_kept(alice: Any, tokens: AccessTokens) -> None:
    response = create(alice, name="  ", scopes=[])
    assert response.status_code == 400
    assert 'id="name-error"' in response.text and 'id="scopes-error"' in response.text

    response = create(alice, name="Deploy", scopes=["pullrequest:write"], expires_at="soon")
    assert response.status_code == 400
    html = response.text
    assert 'value="Deploy"' in html
    assert re.search(r'value="pullrequest:write"\s+data-implies="[^"]*" checked', html)
    assert "must be a date" in html
    # With JavaScript off, what the choice implies is marked as such.
    item = html.split('value="repository:write"')[1].split("</li>")[0]
    assert "(implied)</span>" in item and "hidden>(implied)" not in item

    response = create(alice, scopes=["account"])
    assert response.status_code == 400 and "cannot hold" in response.text
    response = create(alice, expires_at=(utcnow() - timedelta(days=2)).date().isoformat())
    assert response.status_code == 400 and "must be in the future" in response.text
    assert tokens.list_tokens("acme", repository="api") == []


def test_expiry_is_optional_and_stored(alice: Any, tokens: AccessTokens) -> None:
    day = (utcnow() + timedelta(days=10)).date()
    assert create(alice, expires_at=day.isoformat()).status_code == 200
    [token] = tokens.list_tokens("acme", repository="api")
    assert token.expires_at is not None and token.expires_at.date() == day


def test_maximum_lifetime_bounds_the_expiry(database_uri: str) -> None:
    app, db, tokens = make_admin_app(database_uri, ACCESSTOKENS_MAX_LIFETIME=timedelta(days=30))
    with running(app, db):
        client = app.test_client()
        client.get("/test-login?user=alice")
        form = client.get(f"{REPO}/new").text
        last = (utcnow() + timedelta(days=30)).date().isoformat()
        assert f'max="{last}"' in form and "required" in form
        assert "required" in create(client, expires_at="").text
        late = (utcnow() + timedelta(days=40)).date().isoformat()
        response = create(client, expires_at=late)
        assert response.status_code == 400 and "must be within 30 days" in response.text
        assert tokens.list_tokens("acme", repository="api") == []
        assert create(client, expires_at=last).status_code == 200


def test_plan_gating_explains_and_refuses(alice: Any, tokens: AccessTokens) -> None:
    url = "/settings/workspaces/hobby/projects/HOB/access-tokens"
    for page in (url, f"{url}/new"):
        html = alice.get(page).text
        assert "not available on the plan of workspace hobby" in html
        assert 'name="scopes"' not in html and "Create access token</a>" not in html
    token = csrf_of(alice.get(f"{REPO}/new").text)
    response = alice.post(
        f"{url}/new", data={"csrf_token": token, "name": "x", "scopes": ["project"]}
    )
    assert response.status_code == 403
    assert tokens.list_tokens("hobby", project="HOB") == []
    assert create(alice, "/settings/repositories/hobby/notes/access-tokens").status_code == 200


def test_project_and_workspace_tokens(alice: Any, admin_app: Flask, tokens: AccessTokens) -> None:
    user = admin_app.test_client()
    secret = secret_of(create(alice, PROJECT, scopes=["project"]).text)
    assert secret and user.get("/repositories/acme/lib", headers=bearer(secret)).status_code == 200
    secret = secret_of(create(alice, WORKSPACE, scopes=["account"]).text)
    assert (
        secret and user.get("/workspaces/acme/members", headers=bearer(secret)).status_code == 200
    )
    [token] = tokens.list_tokens("acme")
    assert token.type == "workspace"


# -- revoke and rotate ----------------------------------------------------------------


def test_revoke_is_confirmed_then_takes_effect(
    alice: Any, admin_app: Flask, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    user = admin_app.test_client()
    assert user.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200

    confirm = alice.get(f"{REPO}/{new.token.id}/revoke")
    assert confirm.status_code == 200 and "can't be undone" in confirm.text
    assert tokens.get_token(new.token.id).revoked_at is None  # type: ignore[union-attr]
    assert alice.post(f"{REPO}/{new.token.id}/revoke").status_code == 400  # no CSRF token
    response = alice.post(
        f"{REPO}/{new.token.id}/revoke", data={"csrf_token": csrf_of(confirm.text)}
    )
    assert response.status_code == 303
    assert user.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 401
    revoked = tokens.get_token(new.token.id)
    assert revoked is not None and revoked.revoked_by == "alice"
    listing = alice.get(response.headers["Location"]).text
    assert "was revoked" in listing


def test_rotate_shows_the_new_secret_once(
    alice: Any, admin_app: Flask, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    confirm = alice.get(f"{REPO}/{new.token.id}/rotate")
    assert confirm.status_code == 200 and "new secret" in confirm.text
    data = {"csrf_token": csrf_of(confirm.text), "form_id": form_id_of(confirm.text)}
    response = alice.post(f"{REPO}/{new.token.id}/rotate", data=data)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "Token rotated" in response.text
    rotated = secret_of(response.text)
    assert rotated and rotated != new.secret
    user = admin_app.test_client()
    assert user.get("/repositories/acme/api", headers=bearer(rotated)).status_code == 200

    # Sent again, the form rotates nothing: the secret just shown keeps working.
    again = alice.post(f"{REPO}/{new.token.id}/rotate", data=data)
    assert again.status_code == 303
    assert again.headers["Location"] == f"{REPO}?notice=resubmitted"
    assert_nowhere_in(again, rotated)
    assert user.get("/repositories/acme/api", headers=bearer(rotated)).status_code == 200
    events = AccessTokens.service().events(token_id=new.token.id)
    assert [e.action for e in events].count("rotated") == 1
    # (Last: a rotated-out secret, presented, counts as reused and revokes the token.)
    assert user.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 401


def test_revoked_token_cannot_be_rotated(alice: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    opened = rotate_form(alice, new.token.id)  # revoked by someone else meanwhile
    tokens.revoke_token(new.token.id)
    confirm = alice.get(f"{REPO}/{new.token.id}/rotate")
    assert "it no longer works" in confirm.text and 'name="form_id"' not in confirm.text
    response = alice.post(f"{REPO}/{new.token.id}/rotate", data=opened)
    assert response.status_code == 409 and "cannot be rotated" in response.text


# -- the workspace overview -----------------------------------------------------------


def test_overview_filters(alice: Any, admin_app: Flask, tokens: AccessTokens) -> None:
    repo = tokens.create_token(name="r", workspace="acme", repository="api", scopes=["runner"])
    project = tokens.create_token(name="p", workspace="acme", project="WEB", scopes=["project"])
    workspace = tokens.create_token(name="w", workspace="acme", scopes=["account"])
    tokens.create_token(name="other", workspace="hobby", repository="notes", scopes=["runner"])
    user = admin_app.test_client()
    assert user.get("/workspaces/acme/members", headers=bearer(workspace.secret)).status_code == 200

    everything = alice.get(f"{WORKSPACE}/all")
    assert ids_in(everything.text) == {repo.token.id, project.token.id, workspace.token.id}
    assert 'href="/settings/workspaces/acme/projects/WEB/access-tokens"' in everything.text
    only = ids_in(alice.get(f"{WORKSPACE}/all?type=project").text)
    assert only == {project.token.id}
    never = ids_in(alice.get(f"{WORKSPACE}/all?never_used=1").text)
    assert never == {repo.token.id, project.token.id}
    stale = ids_in(alice.get(f"{WORKSPACE}/all?unused_days=30").text)
    assert stale == {repo.token.id, project.token.id}  # the workspace token was just used
    response = alice.get(f"{WORKSPACE}/all?unused_days=soon&type=nope")
    assert response.status_code == 400 and ids_in(response.text) == set()


# -- embedding -------------------------------------------------------------------------


def test_apps_can_override_the_layout(database_uri: str) -> None:
    app, db, tokens = make_admin_app(database_uri)
    app.jinja_loader = DictLoader(  # type: ignore[method-assign,assignment]
        {
            "accesstokens/base.html": "<div id=host-layout>"
            "{% block accesstokens_content %}{% endblock %}</div>"
        }
    )
    with running(app, db):
        client = app.test_client()
        client.get("/test-login?user=alice")
        html = client.get(REPO).text
        assert html.startswith("<div id=host-layout>") and "Access tokens" in html


def test_pages_may_be_framed_only_by_the_same_site(alice: Any) -> None:
    response = alice.get(REPO)
    assert response.headers.get("X-Frame-Options") == "SAMEORIGIN"
