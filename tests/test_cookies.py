"""A token can never create a session: responses to token-authenticated
requests carry no ``Set-Cookie``, whatever the view or the app does."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask import make_response
from flask import session
from helpers import basic
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope


@pytest.fixture
def cookie_app(app: Flask) -> Flask:
    @app.get("/c/<workspace>/<repo_slug>/session")
    @require_scope("repository")
    def writes_session(workspace: str, repo_slug: str) -> Any:
        session["user"] = "mallory"
        session.permanent = True
        return jsonify(ok=True)

    @app.get("/c/<workspace>/<repo_slug>/cookie")
    @require_scope("repository")
    def sets_cookie(workspace: str, repo_slug: str) -> Any:
        response = make_response(jsonify(ok=True))
        response.set_cookie("remember", "me")
        response.set_cookie("other", "too", httponly=True)
        return response

    @app.get("/c/<workspace>/<repo_slug>/optional")
    @require_scope("repository", optional=True)
    def optional_session(workspace: str, repo_slug: str) -> Any:
        session["seen"] = True
        return jsonify(ok=True)

    @app.get("/c/login")
    def cookie_login() -> Any:
        session["user"] = "alice"
        return jsonify(ok=True)

    @app.after_request
    def cookie_tracking(response: Any) -> Any:
        response.set_cookie("tracking", "1")
        return response

    return app


@pytest.fixture
def secret(tokens: AccessTokens, app: Flask) -> str:
    return tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret


@pytest.mark.parametrize("path", ["session", "cookie", "optional"])
@pytest.mark.parametrize("auth", [bearer, basic], ids=["bearer", "basic"])
def test_token_authenticated_responses_set_no_cookie(
    cookie_app: Flask, secret: str, path: str, auth: Any
) -> None:
    client = cookie_app.test_client()
    response = client.get(f"/c/acme/api/{path}", headers=auth(secret))
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert client.get_cookie("session") is None


def test_an_existing_session_is_not_refreshed_for_a_token_request(
    cookie_app: Flask, secret: str
) -> None:
    cookie_app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    client = cookie_app.test_client()
    assert client.get("/c/login").headers.getlist("Set-Cookie")
    response = client.get("/c/acme/api/session", headers=bearer(secret))
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []


def test_requests_without_a_token_still_get_their_cookies(cookie_app: Flask) -> None:
    client = cookie_app.test_client()
    cookies = client.get("/c/login").headers.getlist("Set-Cookie")
    assert any(c.startswith("session=") for c in cookies)
    assert any(c.startswith("tracking=") for c in cookies)
    anonymous = client.get("/c/acme/api/optional").headers.getlist("Set-Cookie")
    assert any(c.startswith("session=") for c in anonymous)


def test_the_next_request_without_a_token_gets_cookies_again(
    cookie_app: Flask, secret: str
) -> None:
    """The rule is per request, not a switch left on."""
    client = cookie_app.test_client()
    assert (
        client.get("/c/acme/api/cookie", headers=bearer(secret)).headers.getlist("Set-Cookie") == []
    )
    assert client.get("/c/login").headers.getlist("Set-Cookie")
