"""The management JSON API, used together with the tokens it manages."""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource

REPO = "/api/repositories/acme/api/access-tokens"
OTHER_REPO = "/api/repositories/acme/lib/access-tokens"
PROJECT = "/api/workspaces/acme/projects/API/access-tokens"
WORKSPACE = "/api/workspaces/acme/access-tokens"
ALICE = {"X-Test-User": "alice"}
#: Who administers which workspace in the test app.
ADMINS = {"alice": {"acme", "hobby"}, "bob": {"hobby"}}
PREMIUM = {"acme"}


def allow_managers(tokens: AccessTokens) -> None:
    """A stand-in for the host app's sign-in: the user is named by a header."""

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = request.headers.get("X-Test-User")
        if user is not None and resource.workspace in ADMINS.get(user, set()):
            return user
        return None

    @tokens.allowed_token_types_loader
    def token_types(workspace: str) -> tuple[str, ...]:
        if workspace in PREMIUM:
            return ("repository", "project", "workspace")
        return ("repository",)


@pytest.fixture
def managed(tokens: AccessTokens) -> AccessTokens:
    allow_managers(tokens)
    return tokens


def create(
    client: Any, path: str = REPO, headers: dict[str, str] | None = None, **body: Any
) -> Any:
    body.setdefault("name", "CI")
    body.setdefault("scopes", ["repository"])
    return client.post(path, json=body, headers=ALICE if headers is None else headers)


def count(db: SQLAlchemy) -> int:
    return db.session.query(AccessToken).count()


def test_create_use_revoke(client: Any, managed: AccessTokens) -> None:
    response = create(client, scopes=["repository:write"])
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    secret = data["token"]
    assert secret.startswith("bbat_")
    assert data["type"] == "repository"
    assert (data["workspace"], data["project"], data["repository"]) == ("acme", None, "api")
    assert data["scopes"] == ["repository:write"]
    assert data["created_by"] == "alice"
    assert data["state"] == "active"
    assert data["created_at"].endswith("Z")
    assert data["last_used_at"] is None and data["expires_at"] is None
    assert response.headers["Location"].endswith(f"{REPO}/{data['id']}")

    assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 200
    assert client.post("/repositories/acme/api/push", headers=basic(secret)).status_code == 200
    shown = client.get(f"{REPO}/{data['id']}", headers=ALICE).get_json()
    assert shown["last_used_at"] is not None

    assert client.delete(f"{REPO}/{data['id']}", headers=ALICE).status_code == 204
    refused = client.get("/repositories/acme/api", headers=bearer(secret))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # Idempotent: the first revocation stands.
    assert (
        client.delete(f"{REPO}/{data['id']}", headers={"X-Test-User": "alice"}).status_code == 204
    )
    shown = client.get(f"{REPO}/{data['id']}", headers=ALICE).get_json()
    assert shown["state"] == "revoked"
    assert shown["revoked_by"] == "alice"
    assert shown["revoked_at"] is not None


def test_project_and_workspace_tokens(client: Any, managed: AccessTokens) -> None:
    project = create(client, PROJECT, scopes=["project"]).get_json()
    assert (project["type"], project["project"], project["repository"]) == ("project", "API", None)
    assert client.get("/repositories/acme/lib", headers=bearer(project["token"])).status_code == 200
    assert client.get("/repositories/acme/web", headers=bearer(project["token"])).status_code == 403

    workspace = create(client, WORKSPACE, scopes=["account"]).get_json()
    assert workspace["type"] == "workspace"
    members = client.get("/workspaces/acme/members", headers=bearer(workspace["token"]))
    assert members.status_code == 200


def test_no_secret_outside_create(client: Any, managed: AccessTokens) -> None:
    data = create(client).get_json()
    secret = data["token"]
    for path in (REPO, f"{REPO}/{data['id']}", f"{REPO}?q=CI"):
        response = client.get(path, headers=ALICE)
        assert response.status_code == 200
        assert secret not in response.get_data(as_text=True)
        assert secret[len("bbat_") : -6] not in response.get_data(as_text=True)
    assert "token" not in client.get(f"{REPO}/{data['id']}", headers=ALICE).get_json()
    assert all("token" not in v for v in client.get(REPO, headers=ALICE).get_json()["values"])


def _management_requests(token_id: str) -> list[tuple[str, str]]:
    requests = []
    for base in (REPO, PROJECT, WORKSPACE):
        requests += [
            ("POST", base),
            ("GET", base),
            ("GET", f"{base}/{token_id}"),
            ("DELETE", f"{base}/{token_id}"),
            ("POST", f"{base}/{token_id}/rotate"),
            ("GET", f"{base}/{token_id}/usage"),
        ]
    return requests


@pytest.mark.parametrize(
    "credentials",
    ["valid bearer", "valid basic", "lowercase bearer", "garbage bearer", "garbage basic"],
)
def test_tokens_cannot_manage_tokens(
    client: Any, db: SQLAlchemy, managed: AccessTokens, credentials: str
) -> None:
    """Even when the app's loader would say yes (the header names an admin)."""
    workspace = create(client, WORKSPACE, scopes=["project:admin", "account"]).get_json()
    secret = workspace["token"]
    headers = {
        "valid bearer": bearer(secret),
        "valid basic": basic(secret),
        "lowercase bearer": {"Authorization": f"bearer {secret}"},
        "garbage bearer": bearer("bbat_not-a-token"),
        "garbage basic": basic("bbat_garbage"),
    }[credentials]
    before = count(db)
    for method, path in _management_requests(workspace["id"]):
        response = client.open(
            path,
            method=method,
            json={"name": "x", "scopes": ["repository"]},
            headers=ALICE | headers,
        )
        assert response.status_code == 403, (method, path)
        assert response.get_json()["type"] == "error"
        assert secret not in response.get_data(as_text=True)
    assert count(db) == before
    shown = client.get(f"{WORKSPACE}/{workspace['id']}", headers=ALICE).get_json()
    assert shown["state"] == "active"


def test_managers_decided_by_the_app(client: Any, db: SQLAlchemy, managed: AccessTokens) -> None:
    token_id = create(client).get_json()["id"]
    for headers in ({}, {"X-Test-User": "bob"}, {"X-Test-User": "mallory"}):
        for method, path in _management_requests(token_id):
            response = client.open(
                path, method=method, json={"name": "x", "scopes": ["repository"]}, headers=headers
            )
            assert response.status_code == 403, (headers, method, path)
    assert count(db) == 1
    # bob administers hobby, and only hobby.
    assert (
        create(
            client, "/api/repositories/hobby/notes/access-tokens", {"X-Test-User": "bob"}
        ).status_code
        == 201
    )


def test_no_manager_loader_means_no_management(client: Any, tokens: AccessTokens) -> None:
    assert create(client).status_code == 403
    assert client.get(REPO, headers=ALICE).status_code == 403


def test_plan_gating(client: Any, db: SQLAlchemy, managed: AccessTokens) -> None:
    hobby = "/api/workspaces/hobby/projects/HOB/access-tokens"
    response = create(client, hobby, scopes=["project"])
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert "plan" in error["message"] and "Project" in error["message"]
    assert error["detail"] == {"allowed_types": ["repository"]}
    assert (
        create(client, "/api/workspaces/hobby/access-tokens", scopes=["account"]).status_code == 403
    )
    assert count(db) == 0
    assert create(client, "/api/repositories/hobby/notes/access-tokens").status_code == 201


@pytest.mark.parametrize(
    ("kwargs", "content_type"),
    [
        ({"data": "name=CI&scopes=repository"}, "application/x-www-form-urlencoded"),
        ({"data": '{"name": "CI", "scopes": ["repository"]}'}, "text/plain"),
        ({"data": '{"name": "CI", "scopes": ["repository"]}'}, None),
        ({"data": "--x--"}, "multipart/form-data; boundary=x"),
    ],
)
def test_post_needs_json(
    client: Any, db: SQLAlchemy, managed: AccessTokens, kwargs: dict[str, Any], content_type: Any
) -> None:
    """A cross-site HTML form cannot send application/json, so it cannot forge these."""
    headers = dict(ALICE)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(REPO, headers=headers, **kwargs)
    assert response.status_code == 415
    assert response.get_json()["type"] == "error"
    assert count(db) == 0
    token_id = create(client).get_json()["id"]
    response = client.post(f"{REPO}/{token_id}/rotate", headers=headers, **kwargs)
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"scopes": ["repository"]}, {"name"}),
        ({"name": "", "scopes": ["repository"]}, {"name"}),
        ({"name": "x" * 256, "scopes": ["repository"]}, {"name"}),
        ({"name": "a\x00b", "scopes": ["repository"]}, {"name"}),
        ({"name": "CI"}, {"scopes"}),
        ({"name": "CI", "scopes": []}, {"scopes"}),
        ({"name": "CI", "scopes": "repository"}, {"scopes"}),
        ({"name": "CI", "scopes": ["repository", 1]}, {"scopes"}),
        ({"name": "CI", "scopes": ["nope"]}, {"scopes"}),
        ({"name": "CI", "scopes": ["account"]}, {"scopes"}),
        ({"name": 5, "scopes": 5}, {"name", "scopes"}),
        (
            {"name": "CI", "scopes": ["repository"], "expires_at": "2999-01-01T00:00:00"},
            {"expires_at"},
        ),
        ({"name": "CI", "scopes": ["repository"], "expires_at": "tomorrow"}, {"expires_at"}),
        (
            {"name": "CI", "scopes": ["repository"], "expires_at": "2001-01-01T00:00:00Z"},
            {"expires_at"},
        ),
        ({"name": "CI", "scopes": ["repository"], "expires_at": 1}, {"expires_at"}),
        (
            {"name": "CI", "scopes": ["repository"], "expires_at": "9999-12-31T23:00:00-05:00"},
            {"expires_at"},
        ),
        ({"name": "CI", "scopes": ["repository"], "expiry": "2999-01-01T00:00:00Z"}, {"expiry"}),
    ],
)
def test_field_errors(
    client: Any, db: SQLAlchemy, managed: AccessTokens, body: dict[str, Any], fields: set[str]
) -> None:
    response = client.post(REPO, json=body, headers=ALICE)
    assert response.status_code == 400
    data = response.get_json()
    assert data["type"] == "error" and data["error"]["message"]
    assert set(data["error"]["fields"]) == fields
    assert all(data["error"]["fields"].values())
    assert count(db) == 0


@pytest.mark.parametrize("raw", ["{", "[1, 2]", '"name"', "null", "\xff"])
def test_body_must_be_a_json_object(
    client: Any, db: SQLAlchemy, managed: AccessTokens, raw: str
) -> None:
    headers = ALICE | {"Content-Type": "application/json"}
    response = client.post(REPO, data=raw.encode("latin-1"), headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"] == {}
    assert count(db) == 0


def test_expiry(client: Any, db: SQLAlchemy, managed: AccessTokens) -> None:
    soon = datetime.now(timezone.utc) + timedelta(days=1)
    local = soon.astimezone(timezone(timedelta(hours=2))).isoformat()
    data = create(client, expires_at=local).get_json()
    assert datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")) == soon
    assert data["expires_at"].endswith("Z")
    assert client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 200
    _expire(db, data["id"])
    assert client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 401
    shown = client.get(f"{REPO}/{data['id']}", headers=ALICE).get_json()
    assert shown["state"] == "expired"


def test_max_lifetime(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_MAX_LIFETIME=timedelta(days=30))
    allow_managers(tokens)
    client = app.test_client()
    response = create(client)
    assert response.status_code == 400
    assert "30 days" in response.get_json()["error"]["fields"]["expires_at"]
    far = (datetime.now(timezone.utc) + timedelta(days=31)).isoformat()
    assert create(client, expires_at=far).status_code == 400
    near = (datetime.now(timezone.utc) + timedelta(days=29)).isoformat()
    assert create(client, expires_at=near).status_code == 201
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def _expire(db: SQLAlchemy, token_id: str) -> None:
    token = db.session.get(AccessToken, token_id)
    assert token is not None
    token.expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    db.session.commit()


def test_other_resources_ids_are_not_found(client: Any, managed: AccessTokens) -> None:
    mine = create(client).get_json()
    theirs = create(client, OTHER_REPO).get_json()
    project = create(client, PROJECT, scopes=["project"]).get_json()
    for base, token_id in [
        (REPO, theirs["id"]),
        (REPO, project["id"]),
        (PROJECT, mine["id"]),
        (WORKSPACE, mine["id"]),
        (WORKSPACE, project["id"]),
        ("/api/workspaces/acme/projects/WEB/access-tokens", project["id"]),
        ("/api/repositories/hobby/api/access-tokens", mine["id"]),
        (REPO, "0" * 32),
        (REPO, "not-an-id"),
    ]:
        for method, path in [
            ("GET", f"{base}/{token_id}"),
            ("DELETE", f"{base}/{token_id}"),
            ("POST", f"{base}/{token_id}/rotate"),
        ]:
            response = client.open(path, method=method, json={}, headers=ALICE)
            assert response.status_code == 404, (method, path)
            assert response.get_json()["type"] == "error"
    # None of that touched the tokens.
    for data, path in [(mine, "/repositories/acme/api"), (theirs, "/repositories/acme/lib")]:
        assert client.get(path, headers=bearer(data["token"])).status_code == 200
    assert (
        client.get("/workspaces/acme/projects/API", headers=bearer(project["token"])).status_code
        == 200
    )


def test_list_is_exact_and_paginated(client: Any, managed: AccessTokens) -> None:
    created = [create(client, name=f"token {i}").get_json()["id"] for i in range(23)]
    create(client, OTHER_REPO)
    create(client, PROJECT, scopes=["project"])

    first = client.get(f"{REPO}?pagelen=10&q=token", headers=ALICE).get_json()
    assert (first["page"], first["pagelen"], first["size"]) == (1, 10, 23)
    assert "previous" not in first
    seen = [v["id"] for v in first["values"]]
    url = first["next"]
    pages = 1
    while url:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.path == REPO
        query = parse_qs(parts.query)
        assert query["q"] == ["token"] and query["pagelen"] == ["10"]
        page = client.get(f"{parts.path}?{parts.query}", headers=ALICE).get_json()
        pages += 1
        assert page["page"] == pages
        assert "previous" in page
        seen += [v["id"] for v in page["values"]]
        url = page.get("next")
    assert pages == 3
    assert seen == created[::-1]  # newest first, each once

    default = client.get(REPO, headers=ALICE).get_json()
    assert default["pagelen"] == 10 and len(default["values"]) == 10
    assert client.get(f"{REPO}?page=9", headers=ALICE).get_json()["values"] == []


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "pagelen=0",
        "pagelen=101",
        "pagelen=1.5",
        "state=gone",
        "never_used=maybe",
        "last_used_before=yesterday",
        "last_used_before=2020-01-01T00:00:00",
        "q=%00",
    ],
)
def test_list_rejects_bad_parameters(client: Any, managed: AccessTokens, query: str) -> None:
    response = client.get(f"{REPO}?{query}", headers=ALICE)
    assert response.status_code == 400
    assert set(response.get_json()["error"]["fields"]) == {query.partition("=")[0]}


def test_list_filters(client: Any, db: SQLAlchemy, managed: AccessTokens) -> None:
    used = create(client, name="Deploy key").get_json()
    unused = create(client, name="backup").get_json()
    revoked = create(client, name="old deploy").get_json()
    expired = create(client, name="temp").get_json()
    client.get("/repositories/acme/api", headers=bearer(used["token"]))
    client.delete(f"{REPO}/{revoked['id']}", headers=ALICE)
    _expire(db, expired["id"])

    def ids(query: str) -> set[str]:
        response = client.get(f"{REPO}?{query}", headers=ALICE)
        assert response.status_code == 200
        return {v["id"] for v in response.get_json()["values"]}

    assert ids("state=active") == {used["id"], unused["id"]}
    assert ids("state=revoked") == {revoked["id"]}
    assert ids("state=expired") == {expired["id"]}
    assert ids("never_used=true") == {unused["id"], revoked["id"], expired["id"]}
    assert ids("q=DEPLOY") == {used["id"], revoked["id"]}
    assert ids("q=%25") == set()  # a literal %, not a wildcard
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"last_used_before={future}") == {
        used["id"],
        unused["id"],
        revoked["id"],
        expired["id"],
    }
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert used["id"] not in ids(f"last_used_before={past.replace('+', '%2B')}")
    assert ids("state=active&q=deploy&never_used=false") == {used["id"]}


def test_rotate(client: Any, managed: AccessTokens) -> None:
    old = create(client, scopes=["repository:write", "webhook"]).get_json()
    response = client.post(f"{REPO}/{old['id']}/rotate", json={}, headers=ALICE)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    new = response.get_json()
    assert new["id"] == old["id"] and new["scopes"] == old["scopes"]
    assert new["token"] != old["token"]
    assert new["rotated_at"] is not None
    assert (
        client.post("/repositories/acme/api/push", headers=bearer(new["token"])).status_code == 200
    )
    assert client.get("/repositories/acme/api", headers=bearer(old["token"])).status_code == 401
    # That was a rotated-out secret presented after its grace window: the
    # holder may have the new one too, so reuse detection revoked the token.
    shown = client.get(f"{REPO}/{old['id']}", headers=ALICE).get_json()
    assert shown["state"] == "revoked"
    assert client.get("/repositories/acme/api", headers=bearer(new["token"])).status_code == 401


def test_rotate_with_grace_and_reuse(client: Any, managed: AccessTokens) -> None:
    old = create(client).get_json()
    new = client.post(f"{REPO}/{old['id']}/rotate", json={"grace": 600}, headers=ALICE).get_json()
    for secret in (old["token"], new["token"]):
        assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 200
    # An empty body with the JSON content type is a rotation with the default grace.
    newer = client.post(
        f"{REPO}/{old['id']}/rotate", headers=ALICE | {"Content-Type": "application/json"}
    )
    assert newer.status_code == 201
    assert client.get("/repositories/acme/api", headers=bearer(new["token"])).status_code == 401


@pytest.mark.parametrize("grace", [-1, 1801, "60", True, 1.5])
def test_rotate_rejects_bad_grace(client: Any, managed: AccessTokens, grace: Any) -> None:
    old = create(client).get_json()
    response = client.post(f"{REPO}/{old['id']}/rotate", json={"grace": grace}, headers=ALICE)
    assert response.status_code == 400
    assert set(response.get_json()["error"]["fields"]) == {"grace"}
    assert client.get("/repositories/acme/api", headers=bearer(old["token"])).status_code == 200


def test_rotate_revoked_or_expired_is_a_conflict(
    client: Any, db: SQLAlchemy, managed: AccessTokens
) -> None:
    revoked = create(client).get_json()
    client.delete(f"{REPO}/{revoked['id']}", headers=ALICE)
    expired = create(client).get_json()
    _expire(db, expired["id"])
    for data, state in [(revoked, "revoked"), (expired, "expired")]:
        response = client.post(f"{REPO}/{data['id']}/rotate", json={}, headers=ALICE)
        assert response.status_code == 409
        assert state in response.get_json()["error"]["message"]
        assert "token" not in response.get_json()
        assert (
            client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 401
        )


def test_bad_resource_names_are_not_found(client: Any, managed: AccessTokens) -> None:
    assert client.get("/api/workspaces/%01/access-tokens", headers=ALICE).status_code == 404
    assert (
        client.get(f"/api/workspaces/{'a' * 256}/access-tokens", headers=ALICE).status_code == 404
    )


def test_prefix_is_configurable(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_API_URL_PREFIX="/2.0/")
    allow_managers(tokens)
    client = app.test_client()
    response = create(client, "/2.0/repositories/acme/api/access-tokens")
    assert response.status_code == 201
    assert "/2.0/repositories/acme/api/access-tokens/" in response.headers["Location"]
    assert create(client).status_code == 404
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_api_can_be_turned_off(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_API_URL_PREFIX=None)
    allow_managers(tokens)
    assert create(app.test_client()).status_code == 404
    assert not any(
        rule.endpoint.startswith("accesstokens_api.") for rule in app.url_map.iter_rules()
    )
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_database_failure_is_503(client: Any, app: Flask, managed: AccessTokens) -> None:
    from sqlalchemy.exc import OperationalError

    store = AccessTokens.service()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("database is gone"))

    store.search = broken
    response = client.get(REPO, headers=ALICE)
    assert response.status_code == 503
    assert response.get_json()["type"] == "error"
    assert "gone" not in response.get_data(as_text=True)


def test_a_mounted_api_without_manager_loader_is_logged_once_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    AccessTokens(app, db=SQLAlchemy(app))
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        client.get("/nothing-here")
        client.get("/api/workspaces/acme/access-tokens")
        client.get("/api/workspaces/acme/access-tokens")
    warnings = [r for r in caplog.records if "manager_loader" in r.getMessage()]
    assert len(warnings) == 1
    assert "/api" in warnings[0].getMessage()


def test_no_warning_when_a_manager_loader_is_registered_after_init_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    tokens = AccessTokens(app, db=SQLAlchemy(app))
    tokens.manager_loader(lambda resource: None)
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        app.test_client().get("/nothing-here")
    assert not [r for r in caplog.records if "manager_loader" in r.getMessage()]
