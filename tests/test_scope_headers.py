"""Bitbucket's scope headers on responses to token-authenticated requests."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens

HEADERS = ("X-OAuth-Scopes", "X-Accepted-OAuth-Scopes", "X-Credential-Type")


def _close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def _headers(response: Any) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in HEADERS}


def test_view_response_carries_granted_and_accepted_scopes(
    client: Any, tokens: AccessTokens
) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["pullrequest:write", "webhook"]
    )
    response = client.get("/repositories/acme/api", headers=bearer(new.secret))
    assert response.status_code == 200
    assert _headers(response) == {
        "X-OAuth-Scopes": "pullrequest:write, webhook",  # as granted, not implied
        "X-Accepted-OAuth-Scopes": "repository",
        "X-Credential-Type": "repo_access_token",
    }
    assert response.headers.getlist("X-OAuth-Scopes") == ["pullrequest:write, webhook"]


def test_credential_type_per_token_type(client: Any, tokens: AccessTokens) -> None:
    project = tokens.create_token(name="p", workspace="acme", project="API", scopes=["project"])
    workspace = tokens.create_token(name="w", workspace="acme", scopes=["account"])
    r = client.get("/workspaces/acme/projects/API", headers=bearer(project.secret))
    assert r.status_code == 200
    assert r.headers["X-Credential-Type"] == "project_access_token"
    r = client.get("/workspaces/acme/members", headers=bearer(workspace.secret))
    assert r.status_code == 200
    assert r.headers["X-Credential-Type"] == "workspace_access_token"
    assert r.headers["X-Accepted-OAuth-Scopes"] == "account"


def test_all_and_any_routes_list_every_scope(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["runner", "pullrequest:write"]
    )
    r = client.get("/repositories/acme/api/either", headers=bearer(new.secret))
    assert r.status_code == 200
    assert r.headers["X-Accepted-OAuth-Scopes"] == "webhook, runner"
    r = client.post("/repositories/acme/api/pullrequests", headers=bearer(new.secret))
    assert r.status_code == 403  # lacks pipeline: the 403 carries them too
    assert _headers(r) == {
        "X-OAuth-Scopes": ", ".join(new.token.scopes),
        "X-Accepted-OAuth-Scopes": "pullrequest:write, pipeline",
        "X-Credential-Type": "repo_access_token",
    }


def test_scope_and_binding_refusals_carry_them(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    r = client.post("/repositories/acme/api/push", headers=bearer(new.secret))
    assert r.status_code == 403
    assert r.headers["X-Accepted-OAuth-Scopes"] == "repository:write"
    assert r.headers["X-OAuth-Scopes"] == "repository"
    r = client.get("/repositories/acme/web", headers=bearer(new.secret))
    assert r.status_code == 403
    assert r.get_json()["error"]["message"].startswith("This access token is not for")
    assert _headers(r)["X-Credential-Type"] == "repo_access_token"


def test_no_headers_without_a_valid_token(client: Any, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    for response in (
        client.get("/repositories/acme/api"),
        client.get("/repositories/acme/api", headers=bearer(new.secret[:-1] + "x")),
        client.get("/optional/acme/api"),
    ):
        assert response.status_code in (200, 401)
        assert _headers(response) == dict.fromkeys(HEADERS)
    tokens.revoke_token(new.token.id)
    r = client.get("/repositories/acme/api", headers=bearer(new.secret))
    assert r.status_code == 401
    assert _headers(r) == dict.fromkeys(HEADERS)


def test_headers_survive_app_hooks_and_replace_the_apps_own(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri)

    @app.after_request
    def fake(response: Any) -> Any:
        response.headers["X-OAuth-Scopes"] = "forged"
        return response

    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        r = app.test_client().get("/repositories/acme/api", headers=bearer(new.secret))
        assert r.headers.getlist("X-OAuth-Scopes") == ["repository"]
    _close(app, db)


def test_setting_turns_them_off(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_SCOPE_HEADERS=False)
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        client = app.test_client()
        r = client.get("/repositories/acme/api", headers=bearer(new.secret))
        assert r.status_code == 200
        assert _headers(r) == dict.fromkeys(HEADERS)
        r = client.post("/repositories/acme/api/push", headers=bearer(new.secret))
        assert r.status_code == 403 and _headers(r) == dict.fromkeys(HEADERS)
    _close(app, db)


def test_basic_credentials_get_them_too(app: Flask, client: Any, tokens: AccessTokens) -> None:
    from helpers import basic

    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    r = client.get("/repositories/acme/api", headers=basic(new.secret))
    assert r.status_code == 200 and r.headers["X-OAuth-Scopes"] == "repository"
