"""The SQLite row cache is no timing oracle (issue 21, item 3): a failing
known token (revoked, expired, a canary, a rotated-out secret) costs the same
database lookup as an unknown one, however often it is presented, on every
path the store has (the file's commit stamp, ``PRAGMA data_version``) and on
PostgreSQL. A live token may still be answered from the cache: its holder
already knows it is live.

Counted, not timed: the lookups that reach the database per request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import require_postgresql

from flask_accesstokens import AccessTokens
from flask_accesstokens import pgchange as pgchange_module
from flask_accesstokens import pipeline as pipeline_module
from flask_accesstokens import store as store_module
from flask_accesstokens import tokenformat
from flask_accesstokens.models import AccessToken
from flask_accesstokens.models import utcnow
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.store import RequestStore

#: Presentations of each token after warm-up: the old cache answered the
#: third one from memory.
ROUNDS = 4


class Lookups:
    """Lookups of the token tables that reached the database."""

    def __init__(self) -> None:
        self.count = 0

    def trace(self, statement: str) -> None:
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and "ACCESSTOKENS_SECRET" in text:
            self.count += 1


@pytest.fixture(params=["sqlite-stamp", "sqlite-data_version", "postgresql"])
def database_uri(request: Any, tmp_path: Any) -> Iterator[str]:
    """SQLite with either way of knowing nobody committed, and PostgreSQL."""
    if request.param.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'tokens.sqlite'}"
        return
    with fresh_schema(require_postgresql()) as url:
        yield url


@pytest.fixture
def counted(
    request: Any, database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, AccessTokens, Lookups]]:
    sqlite = database_uri.startswith("sqlite")
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_REVOKE_ON_REUSE=False)
    lookups = Lookups()
    with app.app_context():
        store = Pipeline.of(app).store
        engine = db.engine
    if sqlite:

        @sa.event.listens_for(engine.pool, "connect")
        def traced(dbapi: Any, record: Any) -> None:
            dbapi.set_trace_callback(lookups.trace)

        if "data_version" in request.node.callspec.id:
            store._change = None  # the file's stamp unusable: data_version instead
    else:
        real = RequestStore._run

        def run(self: RequestStore, *args: Any, **kwargs: Any) -> Any:
            lookups.count += 1  # every PostgreSQL lookup is a statement
            return real(self, *args, **kwargs)

        monkeypatch.setattr(RequestStore, "_run", run)
    with app.app_context():
        yield app, tokens, lookups
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


def cost(app: Flask, lookups: Lookups, secret: str) -> tuple[int, int]:
    """(status, lookups) of one request with ``secret``."""
    before = lookups.count
    status = app.test_client().get("/repositories/acme/api", headers=bearer(secret)).status_code
    return status, lookups.count - before


def costs(app: Flask, lookups: Lookups, secret: str) -> list[tuple[int, int]]:
    return [cost(app, lookups, secret) for _ in range(ROUNDS)]


def make(tokens: AccessTokens, name: str, **extra: Any) -> Any:
    return tokens.create_token(
        name=name, workspace="acme", repository="api", scopes=["repository"], **extra
    )


def unknown_costs(app: Flask, lookups: Lookups) -> list[tuple[int, int]]:
    return [cost(app, lookups, tokenformat.generate("bbat")) for _ in range(ROUNDS)]


def test_failing_known_tokens_cost_what_unknown_ones_cost(
    counted: tuple[Flask, AccessTokens, Lookups], database_uri: str
) -> None:
    app, tokens, lookups = counted
    live = make(tokens, "live")
    revoked = make(tokens, "revoked")
    rotated = make(tokens, "rotated")
    canary = tokens.create_canary(name="canary", workspace="acme", repository="api")
    # All of them used (and so cached, where the cache takes them) while live.
    # Both caches (SQLite's file stamp, PostgreSQL's change feed) answer a
    # live token without a lookup.
    for new in (live, revoked, rotated):
        assert costs(app, lookups, new.secret)[-1] == (200, 0)
    tokens.revoke_token(revoked.token.id)
    tokens.rotate_token(rotated.token.id, grace=timedelta(0))
    unknown = unknown_costs(app, lookups)
    assert unknown == [(401, 1)] * ROUNDS
    for name, secret in [
        ("revoked", revoked.secret),
        ("rotated out", rotated.secret),
        ("canary", canary.secret),
    ]:
        assert costs(app, lookups, secret) == unknown, name
    # The control: a live token is still answered from the cache on SQLite,
    # so the counting can see a cache hit when there is one.
    assert costs(app, lookups, live.secret)[-1] == (200, 0)


def test_a_token_that_expires_while_cached_costs_a_lookup(
    counted: tuple[Flask, AccessTokens, Lookups],
    database_uri: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, tokens, lookups = counted
    expiring = make(tokens, "expiring", expires_at=utcnow() + timedelta(days=1))
    with_grace = make(tokens, "grace")
    tokens.rotate_token(with_grace.token.id, grace=timedelta(minutes=10))
    assert costs(app, lookups, expiring.secret)[-1] == (200, 0)
    assert costs(app, lookups, with_grace.secret)[-1] == (200, 0)  # within its grace
    # Time passes; nobody commits anything.
    later = utcnow() + timedelta(days=2)
    monkeypatch.setattr(store_module, "utcnow", lambda: later)
    monkeypatch.setattr(pipeline_module, "utcnow", lambda: later)
    monkeypatch.setattr(pgchange_module.time, "time", lambda: later.timestamp())
    unknown = unknown_costs(app, lookups)
    assert costs(app, lookups, expiring.secret) == unknown
    assert costs(app, lookups, with_grace.secret) == unknown


def test_a_token_expired_in_the_database_costs_a_lookup(
    counted: tuple[Flask, AccessTokens, Lookups], database_uri: str
) -> None:
    app, tokens, lookups = counted
    new = make(tokens, "soon", expires_at=utcnow() + timedelta(days=1))
    assert costs(app, lookups, new.secret)[-1][0] == 200
    db = app.extensions["sqlalchemy"]
    db.session.execute(
        sa.update(AccessToken)
        .where(AccessToken.id == new.token.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    if "postgresql" in database_uri:
        # Plain SQL is honoured once the change feed's bound has passed.
        time.sleep(2 * app.config["ACCESSTOKENS_POSTGRESQL_SYNC_BOUND"].total_seconds())
    assert costs(app, lookups, new.secret) == unknown_costs(app, lookups)
