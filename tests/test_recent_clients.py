"""Recent clients: the last five distinct addresses, written without a
query or a write per request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.models import utcnow

REPO = "/repositories/acme/api"


@contextmanager
def statements(db: SQLAlchemy) -> Iterator[list[str]]:
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.lstrip().upper())

    sa.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listen)


#: Observed use has writes of its own, bounded in test_least_privilege.py.
USAGE_TABLES = ("ACCESSTOKENS_SCOPE_USE", "ACCESSTOKENS_RESOURCE_USE")


def _writes(seen: list[str]) -> list[str]:
    return [
        s
        for s in seen
        if s.startswith(("UPDATE", "INSERT", "DELETE"))
        and not any(table in s.split(" SET ")[0].split(" (")[0] for table in USAGE_TABLES)
    ]


def _get(client: Any, secret: str, ip: str, agent: str | None = "curl/8.0") -> int:
    environ = {"REMOTE_ADDR": ip, "HTTP_USER_AGENT": agent or ""}
    return int(client.get(REPO, headers=bearer(secret), environ_base=environ).status_code)


def _clients(tokens: AccessTokens, db: SQLAlchemy, token_id: str) -> list[dict[str, Any]]:
    db.session.expire_all()
    record = tokens.get_token(token_id)
    assert record is not None
    return record.recent_clients


@pytest.fixture
def made(app: Flask, tokens: AccessTokens) -> tuple[str, str]:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    return new.secret, new.token.id


def test_new_addresses_appear_at_once_newest_first(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made
    assert _clients(tokens, db, token_id) == []
    assert _get(client, secret, "203.0.113.1", "first/1") == 200
    assert _get(client, secret, "2001:db8::1", None) == 200
    assert _get(client, secret, "::ffff:198.51.100.3") == 200
    clients = _clients(tokens, db, token_id)
    assert [c["ip"] for c in clients] == ["198.51.100.3", "2001:db8::1", "203.0.113.1"]
    assert clients[2]["user_agent"] == "first/1"
    assert clients[1]["user_agent"] is None
    assert all(c["last_seen"].endswith("Z") for c in clients)
    assert set(clients[0]) == {"ip", "user_agent", "last_seen"}


def test_known_address_costs_no_write_within_resolution(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made
    assert _get(client, secret, "203.0.113.1") == 200
    with statements(db) as seen:
        for _ in range(10):
            assert _get(client, secret, "203.0.113.1", "other/2") == 200
    assert _writes(seen) == []
    assert len(_clients(tokens, db, token_id)) == 1


def test_known_address_is_refreshed_with_last_use(
    client: Any,
    tokens: AccessTokens,
    db: SQLAlchemy,
    made: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret, token_id = made
    assert _get(client, secret, "203.0.113.1", "old/1") == 200
    assert _get(client, secret, "203.0.113.2", "two/1") == 200
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("flask_accesstokens.pipeline.utcnow", lambda: later)
    with statements(db) as seen:
        for _ in range(3):
            assert _get(client, secret, "203.0.113.1", "new/2") == 200
    assert len(_writes(seen)) == 1  # last use and the client, in one UPDATE
    clients = _clients(tokens, db, token_id)
    assert [c["ip"] for c in clients] == ["203.0.113.1", "203.0.113.2"]
    assert clients[0]["user_agent"] == "new/2"


def test_at_most_five_distinct_and_five_immediate_writes_a_minute(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made
    with statements(db) as seen:
        for n in range(12):
            assert _get(client, secret, f"192.0.2.{n + 1}") == 200
    # Five immediate writes; the rest wait for the last-used coalescing, and
    # a spent budget is remembered: one failed attempt, not one per request.
    assert len([s for s in _writes(seen) if s.startswith("UPDATE")]) <= 6
    clients = _clients(tokens, db, token_id)
    assert [c["ip"] for c in clients] == [f"192.0.2.{n}" for n in (5, 4, 3, 2, 1)]


def test_budget_is_shared_by_workers(
    database_uri: str, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    """A second app on the same database stands in for another worker: the
    budget is counted in the row, so it cannot add five more."""
    from helpers import make_app

    secret, token_id = made
    other, other_db, _ = make_app(database_uri)
    first = other.test_client()
    for n in range(5):
        assert _get(first, secret, f"192.0.2.{n + 1}") == 200
    from flask import current_app

    second = current_app.test_client()
    assert _get(second, secret, "198.51.100.77") == 200
    assert "198.51.100.77" not in [c["ip"] for c in _clients(tokens, db, token_id)]
    with other.app_context():
        AccessTokens.dispose_connections()
        other_db.engine.dispose()


def test_user_agent_is_bounded_and_printable(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made
    assert _get(client, secret, "203.0.113.1", "x" * 5000 + "\x07") == 200
    (seen,) = _clients(tokens, db, token_id)
    assert seen["user_agent"] == "x" * 255


def test_unparseable_address_is_not_recorded(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made
    assert _get(client, secret, "not-an-ip") == 200
    assert _clients(tokens, db, token_id) == []


def test_json_api_and_prune(
    client: Any, tokens: AccessTokens, db: SQLAlchemy, made: tuple[str, str]
) -> None:
    secret, token_id = made

    @tokens.manager_loader
    def alice(resource: Resource) -> str:
        return "alice"

    assert _get(client, secret, "203.0.113.1") == 200
    body = client.get(f"/api/repositories/acme/api/access-tokens/{token_id}").get_json()
    assert [c["ip"] for c in body["recent_clients"]] == ["203.0.113.1"]
    assert tokens.prune_tokens(timedelta(days=1)) == []
    assert len(_clients(tokens, db, token_id)) == 1  # younger than 90 days: kept
    tokens.prune_tokens(timedelta(days=1), dry_run=True, clients_older_than=timedelta(seconds=1))
    assert len(_clients(tokens, db, token_id)) == 1  # a dry run changes nothing
    tokens.prune_tokens(timedelta(days=1), clients_older_than=timedelta(microseconds=1))
    assert _clients(tokens, db, token_id) == []
    record = tokens.get_token(token_id)
    assert record is not None and record.last_used_ip is None
    assert record.last_used_at is not None
    # Forgotten addresses are new again.
    assert _get(client, secret, "203.0.113.1") == 200
    assert [c["ip"] for c in _clients(tokens, db, token_id)] == ["203.0.113.1"]
