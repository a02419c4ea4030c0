"""``init_app`` checks every documented key and names a bad one: a bad value
fails at start-up, never as a 500 on the first request."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens.config import KEYS

#: Bad values for every key, several each.
BAD: dict[str, list[Any]] = {
    "TOKEN_PREFIX": ["", "A", "has space", "x" * 17, 5, None, "bb_at"],
    "REALM": ["", 'say "hi"', "line\nbreak", 3, None],
    "VIEW_ARGS": [{"workspace": 1}, {"tenant": "t"}, {"workspace": ""}, "workspace", None],
    "MESSAGES": ["not a mapping", {"no_such_message": "x"}, {"not_for": ""}, {"not_for": 1}],
    "DIGEST_KEYS": ["a string", [], [""], [None], 42, b"bytes"],
    "LAST_USED_RESOLUTION": [-1, "60", None, timedelta(seconds=-5), True, float("inf")],
    "ROTATION_GRACE": [3600, timedelta(minutes=31), -1, "0", None],
    "REVOKE_ON_REUSE": ["yes", 1, None],
    "MAX_LIFETIME": [0, -1, "30d", timedelta(0)],
    "FAILURE_AUDIT_INTERVAL": [0, -1, "1m", None],
    "STATEMENT_TIMEOUT": [0, -5, "100", 1.5, True],
    "API_URL_PREFIX": ["api", "//x", 5],
    "ADMIN_URL_PREFIX": ["admin", "//x", 5],
    "CLI": ["true", 0, None],
    "RATELIMIT": ["often", "10 per fortnight", 10, ["10/minute"]],
    "RATELIMIT_STORAGE_URI": ["redis", "nosuch://x", 5, None],
    "RATELIMIT_IPV6_PREFIX": [0, 31, 129, "64", 64.0, True, None],
    "SCOPE_HEADERS": ["no", 0, None],
    "EXPIRY_WARNINGS": [30, "30", [0], [-1], [1.5], [True], None],
    "RECENT_CLIENTS_MAX_AGE": [0, -1, "90d", None, timedelta(0), True],
    "SECRET_SCANNING_KEYS": [
        None,
        ["https://x"],
        {"github": "ftp://x"},
        {"github": "file:///etc/passwd"},
        {"git hub": "https://x"},
        {"github": 5},
        {"github": "https://"},
        {"public": "https://x"},
        {"p" * 33: "https://x"},
    ],
    "PUBLIC_REVOCATION_LIMIT": [None, "", "lots", 10],
    "GATEWAY_PROXIES": ["127.0.0.0/8", ["10.0.0.1/8"], ["nope"], [None], None],
    "INTROSPECTION_CLIENTS": [None, ["a"], {"a:b": "s" * 16}, {"a": "short"}, {"a": 1}],
    "OIDC_ISSUERS": [
        None,
        ["https://token.actions.githubusercontent.com"],
        {"github": {"issuer": "https://x"}},
        {"github": {"issuer": "file:///etc", "audience": "a"}},
        {"github": {"issuer": "https://x", "audience": 5}},
        {"github": {"issuer": "https://x", "audience": "a", "multiple_audiences": "yes"}},
        {"git hub": {"issuer": "https://x", "audience": "a"}},
    ],
    "OIDC_EXCHANGE_LIMIT": [None, "", "lots", 10],
    "POSTGRESQL_CACHE": ["yes", 1, None],
    "POSTGRESQL_SYNC_BOUND": [0, -1, 2.5, "0.25", None, timedelta(seconds=3)],
    "READ_DATABASE_URI": ["", "sqlite:///x.db", "mysql://u@h/db", "not a url", 42],
}


def documented_keys() -> set[str]:
    text = (Path(__file__).parents[1] / "docs" / "config.rst").read_text("utf-8")
    return set(re.findall(r"^\.\. data:: ACCESSTOKENS_(\w+)$", text, re.MULTILINE))


def test_every_documented_key_is_checked_and_has_bad_values_here() -> None:
    assert documented_keys() == set(KEYS) == set(BAD)


def cases() -> list[Any]:
    return [
        pytest.param(key, value, id=f"{key}={value!r}")
        for key, values in BAD.items()
        for value in values
    ]


@pytest.mark.parametrize(("key", "value"), cases())
def test_a_bad_value_fails_at_init_app_naming_the_key(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    app.config[f"ACCESSTOKENS_{key}"] = value
    with pytest.raises(ValueError, match=f"ACCESSTOKENS_{key}"):
        AccessTokens(app, db=SQLAlchemy(app))


def test_good_values_pass_and_defaults_are_set() -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI="sqlite://",
        ACCESSTOKENS_ROTATION_GRACE=600,
        ACCESSTOKENS_LAST_USED_RESOLUTION=timedelta(seconds=30),
        ACCESSTOKENS_API_URL_PREFIX="/api/",
        ACCESSTOKENS_EXPIRY_WARNINGS=[1, 7, 7, 30],
        ACCESSTOKENS_RATELIMIT="5/minute",
    )
    AccessTokens(app, db=SQLAlchemy(app))
    for key in KEYS:
        assert f"ACCESSTOKENS_{key}" in app.config
    assert [r.rule for r in app.url_map.iter_rules() if "openapi" in r.rule] == [
        "/api/access-tokens/openapi.json"
    ]


@pytest.mark.parametrize("secret_key", [None, ""])
def test_init_app_needs_a_digest_key(secret_key: str | None) -> None:
    """Without one no token can be made or checked: ``init_app`` says so,
    naming both keys, instead of a 500 on the first request."""
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", SECRET_KEY=secret_key)
    db = SQLAlchemy(app)
    with pytest.raises(ValueError, match="ACCESSTOKENS_DIGEST_KEYS") as raised:
        AccessTokens(app, db=db)
    assert "SECRET_KEY" in str(raised.value)
    assert "accesstokens" not in app.extensions


@pytest.mark.parametrize(
    "config",
    [{"SECRET_KEY": "k"}, {"ACCESSTOKENS_DIGEST_KEYS": ["k"]}],
    ids=["secret-key", "digest-keys"],
)
def test_either_key_is_enough(config: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", **config)
    db = SQLAlchemy(app)
    tokens = AccessTokens(app, db=db)
    with app.app_context():
        db.create_all()
        new = tokens.create_token(name="t", workspace="acme", scopes=["repository"])
        assert new.secret.startswith("bbat_")
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()
