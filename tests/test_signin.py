"""The unauthorized handler: a signed-out visitor of an admin page goes to the
app's sign-in page, a signed-in user without rights keeps the 403, and the
JSON API never asks the handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource

PAGE = "/settings/repositories/acme/api/access-tokens"


@pytest.fixture
def app(database_uri: str) -> Iterator[Flask]:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_ADMIN_URL_PREFIX="/settings")
    asked: list[Resource] = []
    app.config["ASKED"] = asked

    @app.get("/login")
    def login() -> str:
        return "sign in"

    @app.get("/test-login")
    def test_login() -> str:
        session["user"] = request.args["user"]
        return "signed in"

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = session.get("user")
        return user if user == "alice" else None

    @tokens.unauthorized_handler
    def sign_in_first(resource: Resource) -> Any:
        asked.append(resource)
        if "user" in session:
            return None
        return redirect(url_for("login", next=request.full_path.rstrip("?")))

    with app.app_context():
        yield app
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_signed_out_visitor_is_sent_to_sign_in(app: Flask) -> None:
    for path in (PAGE, f"{PAGE}/new", "/settings/workspaces/acme/access-tokens/all?state=active"):
        response = app.test_client().get(path)
        assert response.status_code == 302
        target = urlsplit(response.location)
        assert target.path == "/login"
        assert parse_qs(target.query) == {"next": [path]}
    assert app.config["ASKED"][0] == Resource.of("acme", None, "api")


def test_signed_in_user_without_rights_keeps_the_403(app: Flask) -> None:
    client = app.test_client()
    client.get("/test-login?user=bob")
    response = client.get(PAGE)
    assert response.status_code == 403
    assert "permission" in response.text


def test_manager_never_meets_the_handler(app: Flask) -> None:
    client = app.test_client()
    client.get("/test-login?user=alice")
    assert client.get(PAGE).status_code == 200
    assert app.config["ASKED"] == []


def test_json_api_answers_403_without_asking(app: Flask) -> None:
    response = app.test_client().get("/api/repositories/acme/api/access-tokens")
    assert response.status_code == 403
    assert response.is_json
    assert app.config["ASKED"] == []


def test_without_a_handler_the_page_says_forbidden(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_ADMIN_URL_PREFIX="/settings")
    tokens.manager_loader(lambda resource: None)
    with app.app_context():
        assert app.test_client().get(PAGE).status_code == 403
        AccessTokens.dispose_connections()
        db.engine.dispose()
