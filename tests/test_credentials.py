"""Reading the token from the Authorization header: Bearer, or Basic with the
username ``x-token-auth``; anything else is "no token"."""

from __future__ import annotations

import base64

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from flask_accesstokens import InvalidRequest
from flask_accesstokens.credentials import presents_token
from flask_accesstokens.credentials import token_from_header
from flask_accesstokens.credentials import token_from_request

TOKEN = "bbat_" + "A1" * 24 + "z"


def b64(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    assert token_from_header(f"{scheme} {TOKEN}") == TOKEN


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC"])
def test_basic_with_x_token_auth(scheme: str) -> None:
    assert token_from_header(f"{scheme} {b64('x-token-auth:' + TOKEN)}") == TOKEN


def test_basic_password_is_taken_as_sent() -> None:
    assert token_from_header(f"Basic {b64('x-token-auth: ' + TOKEN + ' ')}") == f" {TOKEN} "
    assert token_from_header(f"Basic {b64('x-token-auth:a:b')}") == "a:b"
    assert token_from_header(f"Basic {b64('x-token-auth:')}") == ""


@pytest.mark.parametrize(
    "username", ["alice", "X-Token-Auth", "x-token-auth ", " x-token-auth", "", "x_token_auth"]
)
def test_basic_with_another_username_is_no_token(username: str) -> None:
    assert token_from_header(f"Basic {b64(username + ':' + TOKEN)}") is None


def test_basic_without_a_colon_is_no_token() -> None:
    assert token_from_header(f"Basic {b64('x-token-auth' + TOKEN)}") is None


@pytest.mark.parametrize(
    "header",
    [None, "", f"Token {TOKEN}", f"Digest {TOKEN}", f"Negotiate {TOKEN}", TOKEN, f"MAC {TOKEN}"],
)
def test_other_schemes_are_no_token(header: str | None) -> None:
    assert token_from_header(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        f"Bearer  {TOKEN}",
        f"Bearer {TOKEN} {TOKEN}",
        f"Bearer {TOKEN},{TOKEN}",
        f"Bearer {TOKEN}, Bearer {TOKEN}",
        f"Bearer {TOKEN}\t",
        "Bearer tökén",
        "Bearer \x00",
        "Basic",
        "Basic !!!!",
        "Basic abc",  # bad padding
        f"Basic {b64('x-token-auth:' + TOKEN)}, Basic {b64('x-token-auth:' + TOKEN)}",
        "Basic " + b64(b"x-token-auth:\xff\xfe"),
        "Bearer " + "a" * 2000,
        "x" * 100_000,
    ],
)
def test_unreadable_headers_are_invalid_requests(header: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        token_from_header(header)
    assert info.value.code == 400
    assert TOKEN not in str(info.value.description)


def test_a_tab_instead_of_a_space_is_not_the_bearer_scheme() -> None:
    assert token_from_header(f"Bearer\t{TOKEN}") is None


def test_token_from_request_never_reads_the_query_string_or_form() -> None:
    environ = EnvironBuilder(
        path=f"/x?access_token={TOKEN}", method="POST", data={"access_token": TOKEN}
    ).get_environ()
    assert token_from_request(Request(environ)) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer  {TOKEN}", True),  # malformed, but ours: refused, not passed on
        (f"Bearer {TOKEN.upper()}", True),  # a mangled prefix is still ours
        ("Bearer bbat_", True),
        ("Bearer bbat_garbage garbage", True),
        (f"Basic {b64('x-token-auth:' + TOKEN)}", True),
        (f"Basic {b64('x-token-auth:')}", True),
        (f"Basic {b64('x-token-auth:not a token')}", True),
        # Everything else is the app's: a JWT, a bare or other Bearer, a user.
        ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl", False),
        ("Bearer " + "eyJ" + "a" * 4000, False),  # longer than any token header
        ("Bearer", False),
        ("Bearer ", False),
        ("Bearer bbat", False),
        ("Bearer other_" + TOKEN[5:], False),
        ("bbat_" + TOKEN, False),
        (f"Basic {b64('alice:secret')}", False),
        (f"Basic {b64('X-Token-Auth:' + TOKEN)}", False),
        (f"Basic {b64('x-token-auth')}", False),  # no colon: a username only
        ("Basic !!!!", False),  # not base64: nobody can say whose
        (f"Token {TOKEN}", False),
        (f"Digest username={TOKEN}", False),
    ],
)
def test_presents_token(header: str | None, expected: bool) -> None:
    assert presents_token(header, "bbat") is expected


def test_presents_token_follows_the_configured_prefix() -> None:
    acme = "acme_" + TOKEN[5:]
    assert presents_token(f"Bearer {acme}", "acme")
    assert not presents_token(f"Bearer {TOKEN}", "acme")
    assert presents_token(f"Basic {b64('x-token-auth:' + TOKEN)}", "acme")
