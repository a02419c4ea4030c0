"""Has any token changed on this PostgreSQL database since a row was read?

The PostgreSQL sibling of ``sqlitechange.py``: it lets a worker answer a
token it has seen without a round trip, and keeps revocation's promise.

- A trigger on the token and secret tables (:data:`TRIGGER_DDL`, made with
  the tables) sends ``NOTIFY accesstokens, '<token id>'`` on every update or
  delete of a row, plain SQL included, and ``'*'`` on a truncate.
- Each worker process has one listener thread with its own connection to the
  primary: ``LISTEN accesstokens``, then a sync every ``bound / 4``: one
  statement reading no table. Notifications arrive on that connection; psycopg
  hands them over while it reads a statement's answer, and the listener drops
  the named token's rows there and then.
- PostgreSQL delivers a notification committed before a round trip starts
  before that round trip's answer (``tests/test_pgchange_property.py``). So
  once a sync's answer is in, every change committed before the sync started
  has been applied to the cache: the sync's start time is how fresh the cache
  is. A row is trusted only while that time is less than the bound old.
- Every call that changes a token returns once the bound has passed since its
  commit (:func:`settle`). A request that starts after it returns trusts the
  cache only if the cache was synced after the commit, so after the
  notification dropped the token's rows.

Each sync also reads the primary's WAL position, the *floor* of lookups
sent to a hot standby (``standby.py``): the standby must have replayed it
before it answers, so it cannot answer with a change the listener heard of
missing (:meth:`PgChange.floor`).

A row read by a query is kept only if no notification was handled and the
listener did not reconnect while the query ran (a ticket taken before it),
so a change racing the query costs a miss, never a stale hit. Only rows that
can authenticate are kept, and they are read again once they expire or their
secret's grace ends: a failing known token costs the same statement as an
unknown one.

The listener checks itself on every sync: its statement must run on the
backend that listens (same process id) and its own notification must come
back with the answer. Behind a pooler in transaction mode neither holds for
long, and the listener gives up for the process's life: lookups run a
statement each, as without the cache. A lost connection, a restart, a
listener killed with ``pg_terminate_backend`` or tables without the trigger
stop the trust within the bound; the listener reconnects by itself.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
import weakref
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .config import Settings
from .models import SECRETS
from .models import TOKENS

log = logging.getLogger("flask_accesstokens")

#: The channel the trigger notifies on.
CHANNEL = "accesstokens"
#: The transaction-local setting the trigger sets, so a service call can ask
#: whether its transaction changed a token (and must wait) in one statement.
CHANGED = "accesstokens.changed"
#: Rows a worker keeps.
MAX_ROWS = 10_000
#: A row is read again this long before its token expires or its secret's
#: grace ends, so no request sees it refused from the cache.
EXPIRY_MARGIN = 1.0
#: The longest wait between attempts to (re)connect the listener.
MAX_BACKOFF = 1.0
#: libpq options of the listener's connection: a silent network is noticed
#: within seconds, not the kernel's default two hours.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2,
    "keepalives": 1,
    "keepalives_idle": 1,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 2000,
    "application_name": "accesstokens-listener",
}

_FUNCTION = f"""
CREATE OR REPLACE FUNCTION accesstokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('{CHANNEL}', '*');
    ELSE
        PERFORM pg_notify('{CHANNEL}', to_jsonb(OLD) ->> TG_ARGV[0]);
        IF TG_OP = 'UPDATE' THEN
            PERFORM pg_notify('{CHANNEL}', to_jsonb(NEW) ->> TG_ARGV[0]);
        END IF;
    END IF;
    PERFORM set_config('{CHANGED}', 'on', true);
    RETURN NULL;
END
$$
"""

#: (table, column naming the token, trigger name prefix)
_TABLES = (
    (TOKENS.name, "id", "accesstokens_token"),
    (SECRETS.name, "token_id", "accesstokens_secret"),
)


def _triggers(table: str, column: str, name: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {name}_notify ON {table}",
        f"CREATE TRIGGER {name}_notify AFTER UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION accesstokens_notify('{column}')",
        f"DROP TRIGGER IF EXISTS {name}_truncate ON {table}",
        f"CREATE TRIGGER {name}_truncate AFTER TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION accesstokens_notify('{column}')",
    ]


#: The statements that make the trigger, per table (the function first):
#: what the migration runs, and ``db.create_all`` through :func:`_on_create`.
TRIGGER_DDL: dict[str, list[str]] = {
    table: ([_FUNCTION] if table == TOKENS.name else []) + _triggers(table, column, name)
    for table, column, name in _TABLES
}
#: What the migration's downgrade runs.
DROP_DDL = [
    *(
        f"DROP TRIGGER IF EXISTS {n}_{k} ON {t}"
        for t, _, n in _TABLES
        for k in ("notify", "truncate")
    ),
    "DROP FUNCTION IF EXISTS accesstokens_notify()",
]
#: The names the listener looks for before it trusts anything.
TRIGGER_NAMES = tuple(f"{n}_{k}" for _, _, n in _TABLES for k in ("notify", "truncate"))


def _on_create(target: sa.Table, connection: sa.Connection, **kw: Any) -> None:
    """``db.create_all``: the trigger comes with the tables, on PostgreSQL.
    Listened on every table, since ``init_app`` copies ours onto the app's
    metadata; SECRETS comes after TOKENS (its foreign key), the function with
    TOKENS."""
    statements = TRIGGER_DDL.get(target.name)
    if statements is None or connection.dialect.name != "postgresql":
        return
    for statement in statements:
        connection.exec_driver_sql(statement)


sa.event.listen(sa.Table, "after_create", _on_create)


def enabled(settings: Settings, engine: Engine) -> bool:
    """Whether this app's PostgreSQL workers may keep rows: every revoking
    call then waits the bound, in every process, listener or not."""
    return settings.postgresql_cache and engine.dialect.name == "postgresql"


def changes_pending(session: Session, settings: Settings) -> bool:
    """Before a service commit: did this transaction change a token or a
    secret? Flushes, then one statement on PostgreSQL with the cache on;
    False everywhere else (nothing there to wait for)."""
    bind = session.get_bind()
    if not isinstance(bind, Engine) or not enabled(settings, bind):
        return False
    session.flush()
    value = session.execute(sa.text(f"SELECT current_setting('{CHANGED}', true)")).scalar()
    return value == "on"


def settle(settings: Settings) -> None:
    """After a commit that changed a token: return once every worker's
    cache has either dropped its rows or stopped being trusted."""
    time.sleep(settings.postgresql_sync_bound.total_seconds())


def _until(row: Any) -> float:
    """When a kept row must be read again: its token's expiry or its
    secret's end of grace, less a margin, as a POSIX time."""
    ends = [
        end.timestamp() for end in (row.expires_at, row.valid_until) if isinstance(end, datetime)
    ]
    return min(ends) - EXPIRY_MARGIN if ends else math.inf


def can_authenticate(row: Any) -> bool:
    """Only these are kept: revoked, canary and rotated-out rows always cost
    a statement, like unknown digests."""
    return row.revoked_at is None and not row.canary and time.time() < _until(row)


class PgChange:
    """One worker process's kept rows and the listener that vouches for them.

    Made in the process that uses it (after ``fork``); :meth:`close` stops
    the listener and closes its connection.
    """

    def __init__(self, engine: Engine, bound: float, owner: object = None) -> None:
        self.bound = bound
        self.period = bound / 4
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[list[Any], dict[str, Any]] = (
            list(cargs),
            {**CONNECT_OPTIONS, **cparams, "autocommit": True},
        )
        self._lock = threading.Lock()
        #: digest -> (row, token id, read again after this POSIX time)
        self._rows: dict[str, tuple[Any, str, float]] = {}
        self._by_token: dict[str, set[str]] = {}
        #: Bumped by every notification and (re)connection: a query's row is
        #: kept only under the ticket it started with.
        self._generation = 0
        self._listening = False
        #: Monotonic start of the last sync whose answer is in (-inf: none).
        self.synced_at = -math.inf
        #: (generation, the primary's WAL insert position) from the last
        #: sync during which no notification came: see :meth:`floor`.
        self._floor: tuple[int, str | None] = (-1, None)
        #: Set when the listener finds itself behind a transaction pooler.
        self.impossible = False
        self._own_channel = f"accesstokens_{secrets.token_hex(8)}"
        self._own_seen = ""
        #: The listening backend's process id (for tests and logs).
        self._backend_pid: int | None = None
        self._stop = threading.Event()
        #: The listener ends soon after its owner (the store) is collected.
        self._owner = (lambda: True) if owner is None else weakref.ref(owner)
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._listen, name="accesstokens-listener", daemon=True
        )
        self._thread.start()
        #: Stops the listener, once: at :meth:`close` or at exit.
        self._exit = weakref.finalize(self, _stop, self._stop, self._thread, self._pid)

    # -- the request path --------------------------------------------------------

    def get(self, digest: str) -> Any:
        """The kept row for ``digest`` if it may be trusted now, else None."""
        if time.monotonic() - self.synced_at >= self.bound:
            return None
        kept = self._rows.get(digest)
        if kept is None:
            return None
        if time.time() >= kept[2]:
            return None  # expiring: read again (and no longer kept)
        return kept[0]

    def floor(self, ticket: int | None) -> str | None:
        """The primary's WAL position a standby must have replayed for a
        query under ``ticket`` to see every change notified before it (and,
        while the listener is fresh, every change committed a bound ago);
        None when no sync since the last notification vouches for one."""
        generation, lsn = self._floor
        if ticket is None or generation != ticket or self._generation != ticket:
            return None
        if time.monotonic() - self.synced_at >= self.bound:
            return None
        return lsn

    def ticket(self) -> int | None:
        """Taken before a query; None when no row may be kept."""
        return self._generation if self._listening else None

    def keep(self, digest: str, row: Any, ticket: int) -> None:
        """Keep a row read under ``ticket`` if it is still current and the
        row can authenticate."""
        if row is None or not can_authenticate(row):
            return
        with self._lock:
            if ticket != self._generation or not self._listening:
                return
            if len(self._rows) >= MAX_ROWS:
                self._rows.clear()
                self._by_token.clear()
            self._rows[digest] = (row, row.id, _until(row))
            self._by_token.setdefault(row.id, set()).add(digest)

    # -- the listener ------------------------------------------------------------

    def forget(self, token_id: str) -> None:
        """Drop a token's kept rows now (this worker just wrote it)."""
        self._forget(token_id)

    def _forget(self, token_id: str) -> None:
        with self._lock:
            self._generation += 1
            if token_id == "*":
                self._rows.clear()
                self._by_token.clear()
                return
            for digest in self._by_token.pop(token_id, ()):
                self._rows.pop(digest, None)

    def _reset(self, listening: bool) -> None:
        with self._lock:
            self._generation += 1
            self._listening = listening
            self.synced_at = -math.inf
            self._rows.clear()
            self._by_token.clear()

    def _running(self) -> bool:
        if self._owner() is None:
            self._stop.set()
        return not self._stop.is_set()

    def _notified(self, notify: Any) -> None:
        if notify.channel == CHANNEL:
            self._forget(notify.payload)
        elif notify.channel == self._own_channel:
            self._own_seen = notify.payload

    def _listen(self) -> None:
        import psycopg

        backoff = 0.05
        while self._running() and not self.impossible:
            try:
                cargs, cparams = self._connect_args
                conn = psycopg.connect(*cargs, **cparams)
            except psycopg.Error as e:
                log.debug("access token listener cannot connect: %s", type(e).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            try:
                if self._session(conn, psycopg):
                    backoff = 0.05
            except psycopg.Error as e:
                log.warning("access token listener lost its connection: %s", type(e).__name__)
            finally:
                self._reset(False)
                conn.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _session(self, conn: Any, psycopg: Any) -> bool:
        """Listen and sync until stopped or lost. False when the tables have
        no trigger (nothing would tell us of changes): retried later."""
        conn.add_notify_handler(self._notified)
        found = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s) AND tgrelid IN "
            "(to_regclass(%s), to_regclass(%s))",
            (list(TRIGGER_NAMES), TOKENS.name, SECRETS.name),
        ).fetchone()
        if found is None or found[0] != len(TRIGGER_NAMES):
            log.warning("access token tables have no change trigger: every lookup is a statement")
            self._stop.wait(MAX_BACKOFF * 5)
            return False
        # Its syncs notify, so they commit: never wait for a synchronous
        # standby (a lagging one would stop the syncs, and the cache).
        conn.execute("SET synchronous_commit = local")
        conn.execute(f"LISTEN {CHANNEL}")
        conn.execute(f"LISTEN {self._own_channel}")
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        pid = self._backend_pid = None if row is None else row[0]
        if pid != conn.info.backend_pid:
            # A proxy that hands out its own cancel keys (pgbouncer, in any
            # mode) stands between us and the server: never trusted.
            self._give_up()
            return False
        self._reset(True)
        sequence = 0
        while self._running():
            sequence += 1
            started, generation = time.monotonic(), self._generation
            answer = conn.execute(
                "SELECT pg_backend_pid(), pg_notify(%s, %s), pg_current_wal_insert_lsn()::text",
                (self._own_channel, str(sequence)),
            ).fetchone()
            if answer is None or answer[0] != pid or self._own_seen != str(sequence):
                # Another backend answered, or ours did not hear itself: a
                # pooler in transaction mode. Never trust this route.
                self._give_up()
                return False
            if self._generation == generation and self._floor[0] != generation:
                # The first sync of this generation during which no
                # notification came: every change notified so far lies
                # before this position of the primary's WAL (and, with no
                # notification since, so does every change a bound old).
                self._floor = (generation, answer[2])
            self.synced_at = started
            self._stop.wait(self.period)
        return True

    def _give_up(self) -> None:
        log.warning(
            "access token listener is not on a PostgreSQL session of its own (a pooler?): "
            "every lookup is a statement"
        )
        self.impossible = True

    def close(self) -> None:
        """Stop the listener and close its connection (in the process that
        made it; a forked child leaves its parent's alone)."""
        self._exit()
        self._reset(False)


def _stop(stop: threading.Event, thread: threading.Thread, pid: int) -> None:
    """Stop a listener and wait for it to close its connection."""
    stop.set()
    if os.getpid() == pid and thread is not threading.current_thread():
        thread.join(timeout=5)


def make(engine: Engine, settings: Settings, owner: object) -> PgChange | None:
    """The change watcher of a worker process, or None where rows are not
    kept (not PostgreSQL, the cache turned off, a driver other than
    psycopg 3). Its listener stops when ``owner`` is garbage-collected."""
    if not enabled(settings, engine) or engine.dialect.driver != "psycopg":
        return None
    return PgChange(engine, settings.postgresql_sync_bound.total_seconds(), owner)
