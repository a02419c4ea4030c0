"""The database fails: it goes away mid-load, stops answering, or gets slow.
A protected request then answers 503 and is never accepted, nothing waits
past the configured timeouts, service comes back by itself, and nothing that
was written is lost.

The outage is made by a TCP proxy between the app and PostgreSQL (see
``services.TcpProxy``), so the server the other tests share stays up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import needs_postgresql
from services import require_postgresql
from services import TcpProxy

from flask_accesstokens import AccessTokens

pytestmark = needs_postgresql

REPO = "/repositories/acme/api"
CONNECT_TIMEOUT = 2  # seconds, libpq's connect_timeout
STATEMENT_TIMEOUT = 1000  # milliseconds, ACCESSTOKENS_STATEMENT_TIMEOUT
#: No request may take longer than this, whatever the database does.
CEILING = CONNECT_TIMEOUT + 2.0


@dataclass
class Rig:
    app: Flask
    db: SQLAlchemy
    tokens: AccessTokens
    proxy: TcpProxy
    direct: sa.Engine  # to the server, around the proxy

    def get(self, secret: str) -> tuple[int, float]:
        started = time.monotonic()
        status = self.app.test_client().get(REPO, headers=bearer(secret)).status_code
        return status, time.monotonic() - started

    def rows(self) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        with self.direct.connect() as conn:
            tokens = set(conn.execute(sa.text("SELECT id, revoked_at FROM accesstokens_token")))
            events = set(
                conn.execute(sa.text("SELECT id, action, token_id FROM accesstokens_event"))
            )
        return tokens, events


@pytest.fixture
def rig() -> Iterator[Rig]:
    with fresh_schema(require_postgresql()) as url:
        proxy = TcpProxy(url)
        app, db, tokens = make_app(
            proxy.url(url),
            SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": CONNECT_TIMEOUT}},
            ACCESSTOKENS_STATEMENT_TIMEOUT=STATEMENT_TIMEOUT,
            ACCESSTOKENS_LAST_USED_RESOLUTION=0,  # write on every use: more to go wrong
        )
        direct = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with app.app_context():
                yield Rig(app, db, tokens, proxy, direct)
                proxy.restore()
                try:
                    db.session.remove()
                except sa.exc.DBAPIError:
                    pass  # its connection died in the outage, and was invalidated
                AccessTokens.dispose_connections()
                db.engine.dispose()
        finally:
            proxy.close()
            direct.dispose()


@dataclass
class Sample:
    sent: float
    took: float
    revoked: bool
    status: int


def _load(rig: Rig, secrets: dict[str, bool], stop: threading.Event) -> list[Sample]:
    """Requests from four threads until ``stop``; each alternates between
    the given secrets (value: whether that token is revoked)."""
    samples: list[Sample] = []
    lock = threading.Lock()

    def run() -> None:
        mine = []
        while not stop.is_set():
            for secret, revoked in secrets.items():
                sent = time.monotonic()
                status, took = rig.get(secret)
                mine.append(Sample(sent, took, revoked, status))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    stop.wait(30)  # the caller sets it; never run unbounded
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    return samples


def test_database_down_mid_load(rig: Rig) -> None:
    live = rig.tokens.create_token(
        name="live", workspace="acme", repository="api", scopes=["repository"]
    )
    dead = rig.tokens.create_token(
        name="dead", workspace="acme", repository="api", scopes=["repository"]
    )
    rig.tokens.revoke_token(dead.token.id, revoked_by="alice")
    tokens_before, events_before = rig.rows()

    stop = threading.Event()
    result: list[Sample] = []
    loader = threading.Thread(
        target=lambda: result.extend(_load(rig, {live.secret: False, dead.secret: True}, stop))
    )
    loader.start()
    try:
        time.sleep(0.7)
        rig.proxy.cut()
        down = time.monotonic()
        time.sleep(0.3)
        # Management fails too, and loudly, while the database is away.
        with pytest.raises(sa.exc.OperationalError):
            rig.tokens.create_token(
                name="during", workspace="acme", repository="api", scopes=["repository"]
            )
        time.sleep(1.2)
        rig.proxy.restore()
        up = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        loader.join(timeout=60)
    samples = result

    assert samples
    assert max(s.took for s in samples) < CEILING
    assert not [s for s in samples if s.revoked and s.status == 200], "a revoked token passed"
    assert {s.status for s in samples} <= {200, 401, 503}
    during = [s for s in samples if s.sent >= down and s.sent + s.took <= up]
    assert len(during) >= 10
    assert {s.status for s in during} == {503}, "a request was answered without the database"
    after = [s for s in samples if s.sent >= up + 1.0]
    assert after, "no load after the database came back"
    assert {s.status for s in after if not s.revoked} == {200}
    assert {s.status for s in after if s.revoked} == {401}

    # Nothing written before the outage is lost, and writing works again.
    tokens_after, events_after = rig.rows()
    assert tokens_before <= tokens_after
    assert events_before <= events_after
    again = rig.tokens.create_token(
        name="after", workspace="acme", repository="api", scopes=["repository"]
    )
    assert rig.get(again.secret)[0] == 200
    assert rig.tokens.get_token(live.token.id) is not None


def test_first_request_after_a_quiet_outage_succeeds(rig: Rig) -> None:
    """The server restarts while nobody is calling: the idle connections the
    app kept are dead, but the database is up, so the next request passes."""
    new = rig.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    assert rig.get(new.secret)[0] == 200
    rig.proxy.cut()
    rig.proxy.restore()
    assert [rig.get(new.secret)[0] for _ in range(3)] == [200, 200, 200]


def test_unreachable_database_fails_within_the_connect_timeout(rig: Rig) -> None:
    new = rig.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    assert rig.get(new.secret)[0] == 200
    rig.proxy.cut()
    assert rig.get(new.secret)[0] == 503  # the idle connection was found dead
    rig.proxy.blackhole()  # and new ones are accepted but never answered

    # Connections the pool still holds fail at once; then each request
    # waits for a new connection, up to the connect timeout, and no longer.
    samples = [rig.get(new.secret) for _ in range(4)]
    assert {status for status, _ in samples} == {503}
    assert max(took for _, took in samples) < CEILING
    assert samples[-1][1] >= CONNECT_TIMEOUT - 0.5

    rig.proxy.cut()
    rig.proxy.restore()
    assert rig.get(new.secret)[0] == 200


@contextmanager
def holding(rig: Rig, sql: str, seconds: float) -> Iterator[None]:
    """Another session runs ``sql`` in a transaction and keeps its locks for
    at most ``seconds`` (or until the block ends), then rolls back."""
    conn = rig.direct.connect()
    conn.exec_driver_sql(sql)
    timer = threading.Timer(seconds, conn.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        conn.rollback()
        conn.close()


def test_slow_lookup_hits_the_statement_timeout_and_fails_closed(rig: Rig) -> None:
    new = rig.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    assert rig.get(new.secret)[0] == 200  # leaves an idle connection to reuse
    timeout = STATEMENT_TIMEOUT / 1000

    with holding(rig, "LOCK TABLE accesstokens_secret IN ACCESS EXCLUSIVE MODE", seconds=10):
        for _ in range(3):
            status, took = rig.get(new.secret)
            assert status == 503
            # The server's timer may fire a few milliseconds before the
            # client's clock says a second has passed.
            assert timeout * 0.95 <= took < timeout * 1.6

    # The connections that timed out were dropped; new ones work.
    assert [rig.get(new.secret)[0] for _ in range(3)] == [200, 200, 200]


def test_a_blocked_last_used_write_does_not_hold_up_the_request(rig: Rig) -> None:
    """A long management transaction holds the token's row: reading it is
    fine (MVCC), writing ``last_used_at`` would wait. The write is best effort,
    so the request must not wait for it past the statement timeout."""
    new = rig.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    lock = f"SELECT 1 FROM accesstokens_token WHERE id = '{new.token.id}' FOR UPDATE"
    with holding(rig, lock, seconds=CEILING + 1):
        status, took = rig.get(new.secret)
    assert status == 200
    # One statement timeout at most: the failed new-client write must not be
    # followed by a last-used write that waits as long again.
    assert took < 2 * STATEMENT_TIMEOUT / 1000
