"""The request path's best-effort writes: last use, recent clients, the
aggregated audit of failures and the revocation of a reused secret.

None of them may fail a request or hold it up: each runs in a short
transaction of its own, apart from the app's session, and gives up quickly.
:class:`~flask_accesstokens.store.RequestStore` (the lookup) is built on it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from . import bounded
from .models import EVENTS
from .models import TOKENS
from .models import utcnow
from .serialize import isoformat
from .state import AppState

log = logging.getLogger("flask_accesstokens")

#: How long a best-effort write (last use, audit of failures) waits for
#: SQLite's write lock before it gives up.
SQLITE_BEST_EFFORT_WAIT_MS = 100
#: Tokens this process revoked for reuse, at most this many remembered.
MAX_REMEMBERED_REUSES = 10_000
#: Recent clients kept per token.
RECENT_CLIENTS = 5
#: New client addresses recorded at once per token per window; more wait for
#: the last-used coalescing.
NEW_CLIENTS_PER_MINUTE = 5
NEW_CLIENTS_WINDOW = timedelta(minutes=1)
#: Longest user agent kept.
USER_AGENT_MAX_LENGTH = 255


class RequestWrites:
    """The writes a request may cause, for one app."""

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._timeout = state.settings.statement_timeout
        self._failures = FailureCounter(state.settings.failure_audit_interval.total_seconds())
        self._engine: Engine | None = None
        self._shared: bool | None = None
        #: Tokens this process already revoked for reuse: later reuses are
        #: only counted, never another write each.
        self._revoked_for_reuse: set[str] = set()

    def _written(self, token_id: str) -> None:
        """Told after each write of a token's usage: the lookup beside may
        hold the row it changed (see :class:`~flask_accesstokens.store.RequestStore`)."""

    def _revoked(self) -> None:
        """Told after a revocation committed here, before it returns."""

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            engine = self._engine = self._state.db.engine
        return engine

    @property
    def shared(self) -> bool:
        """In-memory SQLite: one connection for everything, the session's.
        Our reads and writes go through it, never committing its work."""
        shared = self._shared
        if shared is None:
            shared = self._shared = isinstance(self.engine.pool, StaticPool)
        return shared

    @contextmanager
    def transaction(self, best_effort: bool = True, revokes: bool = False) -> Iterator[Connection]:
        """A short transaction of its own, apart from the app's session, that
        gives up after ``ACCESSTOKENS_STATEMENT_TIMEOUT`` like the lookup. A
        ``best_effort`` write on SQLite also gives up quickly when the app
        holds the write lock, rather than stall the request for seconds. On
        PostgreSQL a write that ``revokes`` nothing (last use, the audit)
        never waits for a synchronous standby: one that lags would stall
        every request that writes."""
        if self.shared:
            yield self._state.db.session.connection()
            return
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                settings = []  # one round trip for both
                if self._timeout:
                    timeout = int(self._timeout)
                    settings.append(f"set_config('statement_timeout', '{timeout}', true)")
                if not revokes:
                    settings.append("set_config('synchronous_commit', 'local', true)")
                if settings:
                    conn.exec_driver_sql("SELECT " + ", ".join(settings))
            if not (best_effort and conn.dialect.name == "sqlite"):
                yield conn
                return
            # busy_timeout belongs to the pooled connection: put it back.
            previous = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BEST_EFFORT_WAIT_MS}")
            try:
                yield conn
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous or 0)}")

    def touch(
        self,
        token_id: str,
        now: datetime,
        client: str | None,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Record use, at most once per resolution, by whichever worker gets
        there first, and with it the client among the recent ones (known or
        new): one UPDATE. Never fails the request."""
        client = bounded.client(client)
        t = TOKENS
        cutoff = now - self._state.settings.last_used_resolution
        due = sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at <= cutoff)
        try:
            with self.transaction() as conn:
                if address is None:
                    conn.execute(
                        t.update()
                        .where(t.c.id == token_id, due)
                        .values(last_used_at=now, last_used_ip=client)
                    )
                    return
                stored, clients = self._clients_with(conn, token_id, now, address, user_agent)
                conn.execute(
                    t.update()
                    .where(t.c.id == token_id, due, _unchanged(stored))
                    .values(last_used_at=now, last_used_ip=client, **_client_values(clients))
                )
        except SQLAlchemyError:
            log.warning("could not record use of access token %s", token_id, exc_info=True)
        finally:
            self._written(token_id)

    def add_client(
        self,
        token_id: str,
        now: datetime,
        client: str | None,
        address: str,
        user_agent: str | None,
        touch: bool,
    ) -> bool | None:
        """Record a new client address now, if this token's budget of
        ``NEW_CLIENTS_PER_MINUTE`` immediate writes allows, and last use with
        it when ``touch`` says it is due: one conditional UPDATE (a second
        one only if another worker wrote last use meanwhile), which counts
        the budget in the row, so it holds across every worker. False when
        the budget is spent or another worker changed the clients meanwhile:
        the address then waits for the usual last-used coalescing. None when
        the write failed (a lock held past the statement timeout, say): the
        request should not try another write."""
        client = bounded.client(client)
        t = TOKENS
        window = now - NEW_CLIENTS_WINDOW
        fresh = sa.or_(t.c.new_clients_since.is_(None), t.c.new_clients_since <= window)
        cutoff = now - self._state.settings.last_used_resolution
        due = sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at <= cutoff)
        budget = {
            # Typed binds: an untyped aware datetime would reach the
            # database as timestamptz and shift with the session's zone.
            "new_clients_since": sa.case((fresh, _stamp(now)), else_=t.c.new_clients_since),
            "new_clients_count": sa.case((fresh, 1), else_=t.c.new_clients_count + 1),
        }
        try:
            with self.transaction() as conn:
                stored, clients = self._clients_with(conn, token_id, now, address, user_agent)
                allowed = (
                    t.c.id == token_id,
                    sa.or_(fresh, t.c.new_clients_count < NEW_CLIENTS_PER_MINUTE),
                    _unchanged(stored),
                )
                values = {**budget, **_client_values(clients)}
                if touch:
                    # Last use only if still due: another worker may have
                    # written it since the lookup. Never rewritten unchanged.
                    taken = conn.execute(
                        t.update()
                        .where(*allowed, due)
                        .values(**values, last_used_at=now, last_used_ip=client)
                    ).rowcount
                    if taken:
                        return True
                taken = conn.execute(t.update().where(*allowed).values(**values)).rowcount
                return bool(taken)
        except SQLAlchemyError:
            log.warning("could not record a client of access token %s", token_id, exc_info=True)
            return None
        finally:
            self._written(token_id)

    @staticmethod
    def _clients_with(
        conn: Connection, token_id: str, now: datetime, address: str, user_agent: str | None
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """The stored recent clients, and what they become with this one.
        The UPDATE that follows only applies if they are still as read
        (compare-and-set), so concurrent workers cannot lose each other's."""
        t = TOKENS
        stored = conn.execute(sa.select(t.c.recent_clients).where(t.c.id == token_id)).scalar()
        return stored, add_recent_client(stored, address, user_agent, now)

    def count_failure(self, reason: str, token_id: str | None, client: str | None) -> int:
        """Aggregate a failure per (reason, token or client) and write it at
        most once per interval each, so a flood cannot flood the audit table.
        Returns the count written now, 0 when nothing was due."""
        client = bounded.client(client)
        (reason, token_id, client), due = self._failures.add((reason, token_id, client))
        if due:
            self.write_event(
                action="auth_failed", token_id=token_id, client=client, count=due, detail=reason
            )
        return due

    def revoke_for_reuse(self, token_id: str, client: str | None) -> bool:
        """Revoke a token whose rotated-out secret came back. True only for
        the request that revoked it: every later one is a counted failure.
        Like every write of the request path it waits briefly for SQLite's
        write lock, not seconds: if it gives up, the request still fails and
        the next reuse tries again."""
        if token_id in self._revoked_for_reuse:
            return False
        t = TOKENS
        try:
            with self.transaction(revokes=True) as conn:
                changed = conn.execute(
                    t.update()
                    .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                    .values(revoked_at=utcnow(), revoked_by="reuse detection")
                ).rowcount
                if changed:
                    conn.execute(
                        EVENTS.insert().values(
                            at=utcnow(),
                            action="reused",
                            token_id=token_id,
                            client=bounded.client(client),
                            count=1,
                            detail="revoked",
                        )
                    )
        except SQLAlchemyError:
            log.error("could not revoke reused access token %s", token_id, exc_info=True)
            return False
        if len(self._revoked_for_reuse) < MAX_REMEMBERED_REUSES:
            self._revoked_for_reuse.add(token_id)
        if changed:
            self._revoked()
        return bool(changed)

    def write_event(self, **values: Any) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(EVENTS.insert().values(at=utcnow(), **values))
        except SQLAlchemyError:
            log.warning("could not write audit event %s", values.get("action"), exc_info=True)


def _stamp(value: datetime) -> sa.BindParameter[Any]:
    return sa.literal(value, TOKENS.c.last_used_at.type)


def _unchanged(stored: str | None) -> sa.ColumnElement[bool]:
    return TOKENS.c.recent_clients.is_not_distinct_from(stored)


def _client_values(clients: list[dict[str, Any]]) -> dict[str, str]:
    return {
        "recent_clients": json.dumps(clients),
        "recent_ips": " ".join(c["ip"] for c in clients),
    }


def add_recent_client(
    stored: str | None, address: str, user_agent: str | None, now: datetime
) -> list[dict[str, Any]]:
    """The recent clients with this one first: one entry per address, at
    most :data:`RECENT_CLIENTS`, user agents bounded and printable."""
    try:
        clients = json.loads(stored) if stored else []
    except ValueError:
        clients = []
    if not isinstance(clients, list):
        clients = []
    entry = {"ip": address, "user_agent": clean_user_agent(user_agent), "last_seen": isoformat(now)}
    kept = [c for c in clients if isinstance(c, dict) and c.get("ip") != address]
    return [entry, *kept][:RECENT_CLIENTS]


def clean_user_agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    text = "".join(c for c in user_agent if c.isprintable())[:USER_AGENT_MAX_LENGTH]
    return text or None


class FailureCounter:
    """Counts failures per (reason, token, client) in this process and says
    when a count is due to be written: at most once per interval per key, and
    at most ``WRITES_PER_INTERVAL`` writes per interval in all, so garbage from
    ever-changing addresses cannot turn into one INSERT per request. Past
    ``MAX_KEYS``, new keys fold into one per reason."""

    MAX_KEYS = 10_000
    WRITES_PER_INTERVAL = 60

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[tuple[Any, ...], tuple[int, float]] = {}
        self._window = -interval
        self._writes = 0

    def add(self, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], int]:
        """The key to write under (folded or not) and the count due, or 0."""
        now = time.monotonic()
        with self._lock:
            if now - self._window >= self.interval:
                self._window, self._writes = now, 0
            if key not in self._pending and len(self._pending) >= self.MAX_KEYS:
                self._forget_quiet_keys(now)
                if len(self._pending) >= self.MAX_KEYS:
                    key = (key[0], None, None)
            count, last_written = self._pending.get(key, (0, -self.interval))
            count += 1
            if now - last_written >= self.interval and self._writes < self.WRITES_PER_INTERVAL:
                self._writes += 1
                self._pending[key] = (0, now)
                return key, count
            self._pending[key] = (count, last_written)
            return key, 0

    def _forget_quiet_keys(self, now: float) -> None:
        self._pending = {
            k: v for k, v in self._pending.items() if v[0] or now - v[1] < self.interval
        }
