"""Reuse detection is aggregated like every other failure (hardening, class 2).

A rotated-out secret presented after its grace window revokes the token and
signals once; every later use is a counted failure, so a flood of them makes
a bounded number of audit rows, and no request waits seconds for a write.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import token_reused
from flask_accesstokens import TokenEvent

REPO = "/repositories/acme/api"


@contextmanager
def app_on(database_uri: str, **config: Any) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    app, db, tokens = make_app(database_uri, **config)
    try:
        with app.app_context():
            yield app, db, tokens
            db.session.remove()
    finally:
        with app.app_context():
            AccessTokens.dispose_connections(app)
            db.engine.dispose()


def rotated_out(tokens: AccessTokens) -> tuple[str, str, str]:
    """A token rotated without grace: (id, old secret, new secret)."""
    old = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    new = tokens.rotate_token(old.token.id, grace=timedelta(0))
    assert new is not None
    return old.token.id, old.secret, new.secret


def events(db: SQLAlchemy, token_id: str) -> list[tuple[str, int, str | None]]:
    db.session.remove()
    rows = db.session.execute(
        sa.select(TokenEvent.action, TokenEvent.count, TokenEvent.detail)
        .where(TokenEvent.token_id == token_id)
        .order_by(TokenEvent.id)
    ).all()
    return [(a, c, d) for a, c, d in rows]


@contextmanager
def reuses(app: Flask) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    with token_reused.connected_to(receiver, app):
        yield seen


def test_a_flood_of_reuse_makes_a_bounded_number_of_rows(database_uri: str) -> None:
    with app_on(database_uri) as (app, db, tokens):
        token_id, old, new = rotated_out(tokens)
        client = app.test_client()
        with reuses(app) as seen:
            for _ in range(200):
                assert client.get(REPO, headers=bearer(old)).status_code == 401
        # The first reuse revoked the token and said so once.
        assert len(seen) == 1
        assert seen[0]["revoked"] is True and seen[0]["token_id"] == token_id
        assert tokens.get_token(token_id).revoked_by == "reuse detection"
        assert client.get(REPO, headers=bearer(new)).status_code == 401
        written = events(db, token_id)
        # "created", "rotated", one "reused" and the aggregated failures: O(1), not 200.
        assert [a for a, _, _ in written].count("reused") == 1
        assert len(written) <= 5, written
        failures = [(c, d) for a, c, d in written if a == "auth_failed"]
        assert failures and all(d in ("rotated", "revoked") for _, d in failures)


def test_reuse_without_revocation_stays_bounded(database_uri: str) -> None:
    with app_on(database_uri, ACCESSTOKENS_REVOKE_ON_REUSE=False) as (app, db, tokens):
        token_id, old, new = rotated_out(tokens)
        client = app.test_client()
        with reuses(app) as seen:
            for _ in range(200):
                assert client.get(REPO, headers=bearer(old)).status_code == 401
        assert seen and all(s["revoked"] is False for s in seen)
        assert client.get(REPO, headers=bearer(new)).status_code == 200
        assert tokens.get_token(token_id).revoked_at is None
        written = events(db, token_id)
        assert len(written) <= 4, written


def test_reuse_on_a_second_worker_is_not_revoked_again(database_uri: str) -> None:
    with app_on(database_uri) as (app, db, tokens):
        token_id, old, _ = rotated_out(tokens)
        with app_on(database_uri) as (other, other_db, _):
            with reuses(app) as first, reuses(other) as second:
                assert app.test_client().get(REPO, headers=bearer(old)).status_code == 401
                for _ in range(20):
                    assert other.test_client().get(REPO, headers=bearer(old)).status_code == 401
            assert [s["revoked"] for s in first] == [True]
            assert second == []
        assert [a for a, _, _ in events(db, token_id)].count("reused") == 1


def test_concurrent_reuse_revokes_exactly_once(database_uri: str) -> None:
    # Two workers (apps on one database), four threads each, all at once.
    with app_on(database_uri) as (app, db, tokens):
        token_id, old, _ = rotated_out(tokens)
        with app_on(database_uri) as (other, _, _):
            barrier = threading.Barrier(8)
            statuses: list[int] = []

            def hit(target: Flask) -> None:
                client = target.test_client()
                barrier.wait()
                statuses.append(client.get(REPO, headers=bearer(old)).status_code)

            with reuses(app) as first, reuses(other) as second:
                threads = [threading.Thread(target=hit, args=(a,)) for a in (app, other) * 4]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
            assert statuses == [401] * 8
            revoked = [s for s in first + second if s["revoked"]]
            assert len(revoked) == 1
        assert tokens.get_token(token_id).revoked_by == "reuse detection"
        assert [a for a, _, _ in events(db, token_id)].count("reused") == 1


def test_reuse_never_waits_seconds_for_a_held_sqlite_lock(tmp_path: Any) -> None:
    path = tmp_path / "tokens.sqlite"
    with app_on(f"sqlite:///{path}") as (app, db, tokens):
        token_id, old, new = rotated_out(tokens)
        client = app.test_client()
        assert client.get(REPO, headers=bearer(new)).status_code == 200  # warm the pool
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            for _ in range(3):
                started = time.monotonic()
                assert client.get(REPO, headers=bearer(old)).status_code == 401
                assert time.monotonic() - started < 2
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Once the lock is free, the next reuse still revokes.
        with reuses(app) as seen:
            assert client.get(REPO, headers=bearer(old)).status_code == 401
        assert [s["revoked"] for s in seen] == [True]
        db.session.remove()
        assert tokens.get_token(token_id).revoked_by == "reuse detection"


@pytest.mark.parametrize("grace", [timedelta(minutes=5)])
def test_a_secret_within_its_grace_is_no_reuse(database_uri: str, grace: timedelta) -> None:
    with app_on(database_uri) as (app, db, tokens):
        old = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        new = tokens.rotate_token(old.token.id, grace=grace)
        assert new is not None
        client = app.test_client()
        with reuses(app) as seen:
            for _ in range(5):
                assert client.get(REPO, headers=bearer(old.secret)).status_code == 200
        assert seen == []
        assert "reused" not in [a for a, _, _ in events(db, old.token.id)]
