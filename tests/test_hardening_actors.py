"""Every column that stores a derived string holds it (issue 21, item 4): a
token with a 255-character name can retire itself, long actors and long
client "addresses" (``X-Forwarded-For`` behind ``ProxyFix``) are cut to fit
rather than failing the write, on SQLite and on PostgreSQL, which enforces
lengths."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import bounded
from flask_accesstokens import tokenformat
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import NAME_MAX_LENGTH
from flask_accesstokens.models import TokenEvent

SELF = "/api/access-tokens/self"
LONG_CLIENT = "203.0.113.7, " + "x" * 300


@pytest.mark.parametrize("length", [1, 20, 240, 241, 242, 254, 255, 300])
def test_token_actor_always_fits(length: int) -> None:
    name = "n" * length
    made = bounded.token_actor(name)
    assert len(made) <= bounded.ACTOR_MAX_LENGTH
    assert made.endswith(" (access token)")
    if length + len(" (access token)") <= bounded.ACTOR_MAX_LENGTH:
        assert made == f"{name} (access token)"  # short names as Bitbucket writes them
    else:
        assert len(made) == bounded.ACTOR_MAX_LENGTH and "…" in made


def test_the_bounds_are_the_columns() -> None:
    columns = AccessToken.__table__.c
    events = TokenEvent.__table__.c
    for column in (columns.revoked_by, columns.created_by, events.actor):
        assert column.type.length == bounded.ACTOR_MAX_LENGTH
    for column in (columns.last_used_ip, events.client):
        assert column.type.length == bounded.CLIENT_MAX_LENGTH
    assert columns.leak_provider.type.length == bounded.LEAK_PROVIDER_MAX_LENGTH
    assert NAME_MAX_LENGTH == 255


@pytest.mark.parametrize("length", [240, 241, 248, 255])
def test_a_long_named_token_retires_itself(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, length: int
) -> None:
    name = "é" * (length - 1) + "z"
    new = tokens.create_token(name=name, workspace="acme", repository="api", scopes=["repository"])
    assert client.get(SELF, headers=bearer(new.secret)).get_json()["name"] == name
    response = client.delete(SELF, headers=bearer(new.secret))
    assert response.status_code == 204
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 401
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.revoked_at is not None
    assert record.revoked_by is not None and len(record.revoked_by) <= 255
    assert record.revoked_by.endswith(" (access token)")
    actors = [event.actor for event in tokens.service().events(new.token.id)]
    assert any(actor == record.revoked_by for actor in actors)


def test_long_actors_from_the_app_are_cut(app: Flask, tokens: AccessTokens, db: SQLAlchemy) -> None:
    someone = "manager:" + "m" * 400
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"], created_by=someone
    )
    assert new.token.created_by == someone[:255]
    rotated = tokens.rotate_token(new.token.id, rotated_by=someone)
    assert rotated is not None
    assert tokens.revoke_resource_tokens("acme", repository="api", revoked_by=someone) == 1
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.revoked_by == someone[:255]
    assert {event.actor for event in tokens.service().events(new.token.id)} == {someone[:255]}


def test_a_long_client_still_revokes_by_public_revocation(
    client: Any, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    live = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    canary = tokens.create_canary(name="trap", workspace="acme", repository="api")
    response = client.post(
        "/api/access-tokens/revoke",
        json={"access_tokens": [live.secret, canary.secret, tokenformat.generate("bbat")]},
        environ_base={"REMOTE_ADDR": LONG_CLIENT},
        buffered=True,
    )
    assert response.status_code == 202
    db.session.expire_all()
    assert tokens.get_token(live.token.id).revoked_at is not None  # type: ignore[union-attr]
    clients = [event.client for event in tokens.service().events()]
    assert LONG_CLIENT[:64] in clients


def test_a_long_client_still_triggers_reuse_revocation(
    app: Flask, tokens: AccessTokens, db: SQLAlchemy
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    tokens.rotate_token(new.token.id, grace=timedelta(0))
    response = app.test_client().get(
        "/repositories/acme/api",
        headers=bearer(new.secret),
        environ_base={"REMOTE_ADDR": LONG_CLIENT},
    )
    assert response.status_code == 401
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.revoked_by == "reuse detection"
    reused = [event for event in tokens.service().events(new.token.id) if event.action == "reused"]
    assert [event.client for event in reused] == [LONG_CLIENT[:64]]


@pytest.mark.parametrize(
    "address",
    [LONG_CLIENT, "fe80::1%" + "e" * 100, "u" * 65],
    ids=["forwarded-list", "long-zone", "65-chars"],
)
def test_long_clients_are_recorded_cut(
    app: Flask, tokens: AccessTokens, db: SQLAlchemy, address: str
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    test_client = app.test_client()
    ok = test_client.get(
        "/repositories/acme/api", headers=bearer(new.secret), environ_base={"REMOTE_ADDR": address}
    )
    assert ok.status_code == 200
    failed = test_client.get(
        "/repositories/acme/api",
        headers=bearer(tokenformat.generate("bbat")),
        environ_base={"REMOTE_ADDR": address},
    )
    assert failed.status_code == 401
    db.session.expire_all()
    record = tokens.get_token(new.token.id)
    assert record is not None and record.last_used_ip == address[:64]
    failures = [event for event in tokens.service().events() if event.action == "auth_failed"]
    assert [event.client for event in failures] == [address[:64]]
