"""``serialize``: datetimes written as Bitbucket writes them, read only with
a timezone, and a token's JSON with every contract field and never a secret."""

from __future__ import annotations

import json
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from importlib.resources import files
from typing import Any

import pytest
from flask import Flask

from flask_accesstokens import AccessTokens
from flask_accesstokens.models import AccessToken
from flask_accesstokens.serialize import isoformat
from flask_accesstokens.serialize import new_token_json
from flask_accesstokens.serialize import parse_datetime
from flask_accesstokens.serialize import token_json

UTC = timezone.utc


def schema_fields(name: str) -> set[str]:
    """The fields the published OpenAPI document requires of ``name``."""
    document = json.loads(files("flask_accesstokens").joinpath("openapi.json").read_text())
    return set(document["components"]["schemas"][name]["required"])


# -- isoformat -------------------------------------------------------------------------


def test_isoformat_writes_utc_with_a_z() -> None:
    assert isoformat(datetime(2030, 1, 31, 12, 0, tzinfo=UTC)) == "2030-01-31T12:00:00Z"
    assert isoformat(datetime(2030, 1, 31, 12, 0, 5, 250000, tzinfo=UTC)) == (
        "2030-01-31T12:00:05.250000Z"
    )


def test_isoformat_converts_other_offsets_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert isoformat(datetime(2030, 1, 1, 1, 0, tzinfo=plus_two)) == "2029-12-31T23:00:00Z"


def test_isoformat_takes_naive_as_utc_and_keeps_none() -> None:
    assert isoformat(datetime(2030, 1, 31, 12, 0)) == "2030-01-31T12:00:00Z"
    assert isoformat(None) is None


# -- parse_datetime --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-31T12:00:00Z", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
        ("2030-01-31T12:00:00z", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
        ("2030-01-31T12:00:00+00:00", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
        ("2030-01-31T14:00:00+02:00", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
        ("2030-01-31T07:30:00-04:30", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
        ("2030-01-31 12:00:00.5Z", datetime(2030, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)),
        ("  2030-01-31T12:00:00Z\n", datetime(2030, 1, 31, 12, 0, tzinfo=UTC)),
    ],
)
def test_parse_datetime_gives_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


def test_parse_datetime_round_trips_isoformat() -> None:
    moment = datetime(2030, 6, 1, 8, 15, 30, 1, tzinfo=UTC)
    assert parse_datetime(isoformat(moment)) == moment


@pytest.mark.parametrize("text", ["2030-01-31T12:00:00", "2030-01-31", "2030-01-31 12:00"])
def test_naive_datetimes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must include a timezone"):
        parse_datetime(text)


@pytest.mark.parametrize(
    "text",
    ["", "Z", "tomorrow", "2030-13-01T00:00:00Z", "2030-01-31T25:00:00Z", "2030-01-31T12:00:00ZZ",
     "12:00:00Z", "2030-01-31T12:00:00+25:00", "\x00", "2030-01-31T12:00:00Z; DROP TABLE"],
)  # fmt: skip
def test_garbage_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime(text)


@pytest.mark.parametrize("value", [None, 1893456000, 1.5, b"2030-01-31T12:00:00Z", ["x"], {}])
def test_non_strings_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="ISO 8601 datetime string"):
        parse_datetime(value)


@pytest.mark.parametrize("text", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_out_of_range_is_a_value_error(text: str) -> None:
    """In range as written, out of range in UTC: a ValueError, never an OverflowError."""
    with pytest.raises(ValueError, match="out of range"):
        parse_datetime(text)


# -- token_json ------------------------------------------------------------------------


def test_token_json_has_every_contract_field(app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(
        name="CI",
        workspace="acme",
        repository="api",
        scopes=["repository:write", "pipeline"],
        created_by="alice",
        expires_at=datetime(2031, 1, 1, tzinfo=UTC),
    )
    body = token_json(new.token)
    assert set(body) == schema_fields("AccessToken")
    assert body["id"] == new.token.id
    assert (body["name"], body["type"], body["state"]) == ("CI", "repository", "active")
    assert (body["workspace"], body["project"], body["repository"]) == ("acme", None, "api")
    assert body["scopes"] == ["repository:write", "pipeline"]
    assert body["created_by"] == "alice"
    assert body["expires_at"] == "2031-01-01T00:00:00Z"
    assert body["created_at"].endswith("Z")
    assert body["last_used_at"] is None and body["revoked_at"] is None
    assert body["hint"] == new.secret[-4:]
    json.dumps(body)  # plain JSON types only


def test_token_json_never_holds_the_secret(app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", scopes=["repository"])
    rotated = tokens.rotate_token(new.token.id, grace=timedelta(minutes=5))
    assert rotated is not None
    revoked = tokens.revoke_token(new.token.id, revoked_by="alice")
    assert revoked is not None
    for record in (new.token, rotated.token, revoked):
        text = json.dumps(token_json(record))
        for secret in (new.secret, rotated.secret):
            assert secret not in text
            assert secret[5:-4] not in text
    assert token_json(revoked)["state"] == "revoked"
    assert token_json(revoked)["revoked_by"] == "alice"


def test_new_token_json_adds_the_secret_once(app: Flask, tokens: AccessTokens) -> None:
    new = tokens.create_token(name="CI", workspace="acme", scopes=["repository"])
    body = new_token_json(new.secret, new.token)
    assert set(body) == schema_fields("NewAccessToken")
    assert body["token"] == new.secret
    assert json.dumps(body).count(new.secret) == 1


def test_token_json_of_an_expired_token() -> None:
    token = AccessToken(
        id="x" * 32,
        name="old",
        type="workspace",
        resource_key="workspace=acme",
        scopes=("account",),
        hint="abcd",
        created_at=datetime(2020, 1, 1, tzinfo=UTC),
        expires_at=datetime(2021, 1, 1, tzinfo=UTC),
    )
    body = token_json(token)
    assert body["state"] == "expired"
    assert body["created_at"] == "2020-01-01T00:00:00Z"
