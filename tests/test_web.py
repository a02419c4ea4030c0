"""``web``: the guard the JSON API and the admin pages share. Which resource a
URL names, who may manage it, and tokens never managing tokens."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from flask import request
from helpers import basic
from helpers import bearer
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import NotFound

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import tokenformat
from flask_accesstokens.web import refuse_tokens_and_bad_queries
from flask_accesstokens.web import require_manager
from flask_accesstokens.web import resource_args
from flask_accesstokens.web import resource_from_view_args

API = "/api/repositories/acme/api/access-tokens"
REPO = Resource.of("acme", None, "api")


# -- resource_from_view_args -----------------------------------------------------------


@pytest.mark.parametrize(
    ("view_args", "expected"),
    [
        ({"workspace": "acme"}, Resource.of("acme")),
        ({"workspace": "acme", "project": "API"}, Resource.of("acme", "API")),
        ({"workspace": "acme", "repository": "api"}, Resource.of("acme", None, "api")),
        ({"workspace": "a_b-c", "repository": "my.repo-1_x"}, Resource.of("a_b-c", None,
                                                                           "my.repo-1_x")),
        ({"workspace": "a" * 255}, Resource.of("a" * 255)),
        # (third round) one rule for names on every surface: other letters are fine
        ({"workspace": "josé", "repository": "äpi"}, Resource.of("josé", None, "äpi")),
        ({"workspace": ".hidden"}, Resource.of(".hidden")),
    ],
)  # fmt: skip
def test_names_name_a_resource(app: Flask, view_args: dict[str, Any], expected: Resource) -> None:
    resource = resource_from_view_args(view_args)
    assert resource == expected
    assert resource_args(resource) == view_args


@pytest.mark.parametrize(
    "name",
    ["api\n", "\napi", "api ", " api", "a/b", ".", "..", "", "a" * 256, "api\x00", "a\u2028b",
     ["api"]],
)  # fmt: skip
@pytest.mark.parametrize("arg", ["workspace", "project", "repository"])
def test_anything_the_service_refuses_is_404(app: Flask, arg: str, name: Any) -> None:
    """A trailing newline would pass ``re.match(r"...$")``: the rule is whole."""
    view_args = {"workspace": "acme", arg: name}
    with pytest.raises(NotFound):
        resource_from_view_args(view_args)


def test_a_trailing_newline_in_the_url_is_404_before_the_loader_is_asked(
    app: Flask, tokens: AccessTokens
) -> None:
    asked: list[Resource] = []

    @tokens.manager_loader
    def manager(resource: Resource) -> str:
        asked.append(resource)
        return "alice"

    client = app.test_client()
    assert client.get("/api/repositories/acme/api%0A/access-tokens").status_code == 404
    assert client.get("/api/workspaces/acme%0A/access-tokens").status_code == 404
    assert asked == []
    assert client.get(API).status_code == 200
    assert asked == [REPO]


# -- require_manager -------------------------------------------------------------------


def test_no_manager_loader_is_403_for_everyone_with_one_warning(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        for _ in range(3):
            with app.test_request_context(), pytest.raises(Forbidden):
                require_manager(REPO)
        assert app.test_client().get(API).status_code == 403
    warnings = [r for r in caplog.records if "manager_loader" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


@pytest.mark.parametrize("answer", ["", None, 0, 1, True, b"alice", ["alice"], {"user": "alice"}])
def test_a_loader_must_name_a_user_as_a_non_empty_string(
    app: Flask, tokens: AccessTokens, answer: Any
) -> None:
    @tokens.manager_loader
    def manager(resource: Resource) -> Any:
        return answer

    with app.test_request_context(), pytest.raises(Forbidden) as raised:
        require_manager(REPO)
    assert "repository api in workspace acme" in str(raised.value.description)
    assert app.test_client().get(API).status_code == 403


def test_the_loader_is_asked_about_the_resource_and_its_answer_is_the_user(
    app: Flask, tokens: AccessTokens
) -> None:
    asked: list[Resource] = []

    @tokens.manager_loader
    def manager(resource: Resource) -> str:
        asked.append(resource)
        return "alice"

    with app.test_request_context():
        assert require_manager(REPO) == "alice"
    assert asked == [REPO]


def test_an_async_loader_works(app: Flask, tokens: AccessTokens) -> None:
    pytest.importorskip("asgiref", reason="async callbacks need flask[async]")

    @tokens.manager_loader
    async def manager(resource: Resource) -> str:
        return "alice"

    with app.test_request_context():
        assert require_manager(REPO) == "alice"


# -- tokens never manage tokens --------------------------------------------------------

SECRET = tokenformat.generate("bbat")


@pytest.mark.parametrize(
    "headers",
    [
        bearer(SECRET),
        bearer("bbat_not even a token"),
        bearer(SECRET.upper()),
        basic(SECRET),
        basic("not even a token"),
    ],
    ids=["bearer", "bearer-garbage", "bearer-mangled", "basic", "basic-garbage"],
)
def test_token_bearing_requests_are_refused_before_the_loader_is_asked(
    app: Flask, tokens: AccessTokens, headers: dict[str, str]
) -> None:
    calls: list[Resource] = []

    @tokens.manager_loader
    def manager(resource: Resource) -> str:
        calls.append(resource)
        return "alice"

    client = app.test_client()
    workspace = "/api/workspaces/acme/access-tokens"
    for method, path in (("GET", API), ("POST", API), ("GET", workspace)):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 403, (method, path, response.data)
    assert calls == []
    # The same loader does answer a request without a token.
    assert client.get(API).status_code == 200
    assert len(calls) == 1


@pytest.mark.parametrize(
    "headers",
    [
        bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),  # a JWT
        bearer("not even a token"),
        {"Authorization": "Bearer"},
        basic("hunter2", username="alice"),
        {"Authorization": "Basic !!!not base64"},
    ],
    ids=["jwt", "other-bearer", "bare-bearer", "user", "bad-basic"],
)
def test_the_apps_own_credentials_reach_the_loader(
    app: Flask, tokens: AccessTokens, headers: dict[str, str]
) -> None:
    """Only the extension's credentials count as a token: a user signed in
    with a JWT or Basic credentials is the loader's to judge."""
    seen: list[str | None] = []

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        seen.append(request.headers.get("Authorization"))
        return "alice" if request.headers.get("Authorization") == headers["Authorization"] else None

    client = app.test_client()
    assert client.get(API, headers=headers).status_code == 200
    assert client.get(API).status_code == 403  # the loader said no
    assert seen == [headers["Authorization"], None]


def test_basic_with_another_username_is_not_a_token(app: Flask) -> None:
    """A user's own password login (Basic with a real user name) is the app's
    business, not a token: the guard lets it through to the loader."""
    with app.test_request_context(headers=basic("hunter2", username="alice")):
        refuse_tokens_and_bad_queries("no tokens")


def test_a_raw_query_string_that_is_not_utf8_is_400(app: Flask) -> None:
    """WSGI hands the raw bytes over as latin-1 text."""
    not_utf8 = {"QUERY_STRING": b"q=\xff\xfe".decode("latin-1")}
    with app.test_request_context(environ_overrides=not_utf8), pytest.raises(BadRequest):
        refuse_tokens_and_bad_queries("no tokens")
    utf8 = {"QUERY_STRING": "q=café".encode().decode("latin-1")}
    with app.test_request_context(environ_overrides=utf8):
        refuse_tokens_and_bad_queries("no tokens")


def test_the_refusal_carries_the_surfaces_message(app: Flask) -> None:
    with app.test_request_context(headers=bearer(SECRET)), pytest.raises(Forbidden) as raised:
        refuse_tokens_and_bad_queries("Access tokens cannot manage access tokens.")
    assert raised.value.description == "Access tokens cannot manage access tokens."
    assert SECRET not in str(raised.value.description)
