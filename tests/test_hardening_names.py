"""Names are matched whole (hardening, class 4).

A workspace, project or repository name with a trailing newline, spaces,
tabs, ``/``, control characters or nothing at all is refused by every
surface (Python, JSON API, CLI) with the field named, and nothing is
written. Names in URLs that are not whole slugs name no resource (404).
Configuration that becomes part of a token or a URL is checked whole too.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import make_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import TokenValidationError

BAD_NAMES = [
    "zz\n",
    "zz\r",
    "zz\r\n",
    "\tzz",
    "zz\t",
    " zz",
    "zz ",
    "z z",
    "a/b",
    "/",
    "zz\x00",
    "zz\x1b",
    "zz\x7f",
    "zz\u2028",
    "zz\u200b",
    "zz\u00a0",
    "",
]
#: Each field of each token type, and the other arguments that make it valid.
FIELDS = [
    ("workspace", {"repository": "api"}),
    ("workspace", {}),
    ("project", {"workspace": "acme"}),
    ("repository", {"workspace": "acme"}),
]


def count(db: SQLAlchemy) -> int:
    db.session.remove()
    return db.session.query(AccessToken).count()


@pytest.mark.parametrize("field,others", FIELDS)
def test_create_token_refuses_names_that_are_not_whole(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens, field: str, others: dict[str, str]
) -> None:
    for bad in BAD_NAMES:
        kwargs: dict[str, Any] = {"workspace": "acme", **others, field: bad}
        with pytest.raises(ValueError) as raised:
            tokens.create_token(name="CI", scopes=["repository"], **kwargs)
        assert isinstance(raised.value, TokenValidationError)
        assert raised.value.field == field, (field, bad)
        assert field in str(raised.value)
    assert count(db) == 0


def test_dots_are_names_not_paths_but_only_as_slugs(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens
) -> None:
    # ".." is printable and has no "/", so it is a name the app's
    # resource_exists callback must judge; the management URLs never reach it.
    for bad in ("a/../b", "../x", "x/.."):
        with pytest.raises(TokenValidationError):
            tokens.create_token(name="CI", workspace="acme", repository=bad, scopes=["repository"])
    assert count(db) == 0


def test_revoke_resource_tokens_refuses_names_that_are_not_whole(
    app: Flask, tokens: AccessTokens
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    for bad in ("api\n", " api", "api ", ""):
        with pytest.raises(TokenValidationError):
            tokens.revoke_resource_tokens(workspace="acme", repository=bad)
    assert tokens.get_token(new.token.id).revoked_at is None


# -- the JSON API ------------------------------------------------------------------


@pytest.fixture
def managed(tokens: AccessTokens) -> AccessTokens:
    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return request.headers.get("X-Test-User")

    return tokens


URL_PROBES = [
    "/api/repositories/acme/zz%0A/access-tokens",
    "/api/repositories/acme/zz%0D/access-tokens",
    "/api/repositories/acme/%09zz/access-tokens",
    "/api/repositories/acme/zz%20/access-tokens",
    "/api/repositories/acme/%20zz/access-tokens",
    "/api/repositories/acme/zz%00/access-tokens",
    "/api/repositories/acme/zz%E2%80%A8/access-tokens",
    "/api/repositories/acme/a%2Fb/access-tokens",
    "/api/repositories/acme/../access-tokens",
    "/api/repositories/acme/%2E%2E/access-tokens",
    "/api/repositories/zz%0A/api/access-tokens",
    "/api/workspaces/acme/projects/API%0A/access-tokens",
    "/api/workspaces/acme%0A/access-tokens",
    "/api/workspaces/%20acme/access-tokens",
]


@pytest.mark.parametrize("url", URL_PROBES)
def test_api_urls_with_names_that_are_not_whole_name_nothing(
    client: Any, db: SQLAlchemy, managed: AccessTokens, url: str
) -> None:
    created = client.post(
        url, json={"name": "CI", "scopes": ["repository"]}, headers={"X-Test-User": "alice"}
    )
    assert created.status_code in (404, 405), created.status_code  # ".." may resolve away
    assert created.status_code != 201
    listed = client.get(url, headers={"X-Test-User": "alice"})
    assert listed.status_code in (404, 405)
    assert count(db) == 0


def test_api_whole_slugs_still_work(client: Any, db: SQLAlchemy, managed: AccessTokens) -> None:
    for url in (
        "/api/repositories/acme/zz/access-tokens",
        "/api/repositories/acme/a.b-c_d/access-tokens",
        "/api/repositories/acme/x..y/access-tokens",
    ):
        response = client.post(
            url, json={"name": "CI", "scopes": ["repository"]}, headers={"X-Test-User": "alice"}
        )
        assert response.status_code == 201, (url, response.json)
    assert count(db) == 3


# -- the CLI -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    ["--repository", "--project", "--workspace"],
)
def test_cli_refuses_names_that_are_not_whole(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens, option: str
) -> None:
    runner = app.test_cli_runner()
    for bad in ("zz\n", "zz\r", "\tzz", " zz", "zz ", "a/b", "zz\x00", ""):
        args = ["access-tokens", "create", "--name", "CI", "--scope", "repository"]
        if option != "--workspace":
            args += ["--workspace", "acme"]
        args += [option, bad]
        result = runner.invoke(args=args)
        assert result.exit_code != 0, (option, bad, result.output)
        if bad:
            field = option.removeprefix("--")
            assert field in result.output, result.output
    assert count(db) == 0


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["bbat\n", "bbat ", " bbat", "bb\tat", "bbat\r", "BBAT", ""])
def test_a_token_prefix_that_is_not_whole_fails_at_init_app(tmp_path: Any, prefix: str) -> None:
    with pytest.raises(ValueError, match="ACCESSTOKENS_TOKEN_PREFIX"):
        make_app(f"sqlite:///{tmp_path / 'x.sqlite'}", ACCESSTOKENS_TOKEN_PREFIX=prefix)


@pytest.mark.parametrize("key", ["ACCESSTOKENS_API_URL_PREFIX", "ACCESSTOKENS_ADMIN_URL_PREFIX"])
@pytest.mark.parametrize(
    "prefix", ["/api\n", "/api ", "/a pi", "/api\t", "/api\x00", "/api/<x>", "/api?x", "/api#x"]
)
def test_a_url_prefix_that_is_not_whole_fails_at_init_app(
    tmp_path: Any, key: str, prefix: str
) -> None:
    with pytest.raises(ValueError, match=key):
        make_app(f"sqlite:///{tmp_path / 'x.sqlite'}", **{key: prefix})
