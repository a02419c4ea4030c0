"""The request path's database access, and only that: one indexed lookup by
digest, and the few best-effort writes a request may cause (last use, the
aggregated audit of failures, reuse of a rotated-out secret).

Connections come from a pool of its own, made from the app engine's pool
(``Pool.recreate()``: same driver, same URL, same connect hooks), so the
request path never holds or disturbs the app's session and its connections
are owned and closed by a pool: :meth:`RequestStore.dispose`, when the store
is garbage-collected, and at exit. After ``fork`` a child starts a new pool
and leaves the parent's connections alone, as SQLAlchemy's documentation
advises (``dispose(close=False)``): closing them would end the parent's
sessions.

With ``ACCESSTOKENS_READ_DATABASE_URI`` the lookups read a hot standby
through a pool of its own, only while ``standby.py`` vouches for it and,
with the row cache, once it has replayed what the listener heard of.

Lookups run in autocommit (no transaction stays open, so every request sees
the latest committed revocation). On SQLite, rows are remembered while the
database file proves nobody committed anything since: its commit stamp, read
from the file without a statement (``sqlitechange.py``), or where that cannot
be trusted, the connection's ``PRAGMA data_version``. A cache hit costs no
statement and no connection. In-memory SQLite has one connection for
everything: the app session's.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import Pool
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.pool import QueuePool

from .errors import StorageUnavailable
from .models import as_utc
from .models import SECRETS
from .models import TOKENS
from .models import utcnow
from .pgchange import enabled as pg_enabled
from .pgchange import make as make_pgchange
from .pgchange import PgChange
from .pgchange import settle
from .sqlitechange import SQLiteChange
from .standby import close_idle
from .standby import Standby
from .state import AppState
from .storewrites import RequestWrites

log = logging.getLogger("flask_accesstokens")

#: Rows a SQLite connection remembers between commits.
MAX_CACHED_ROWS = 10_000


class TokenRow(NamedTuple):
    """What the request path needs of a token and of the presented secret,
    decoded: scopes split, datetimes aware UTC."""

    id: str
    name: str
    type: str
    #: The bound resource's key (``Resource.from_key``).
    resource: str
    scopes: tuple[str, ...]
    created_by: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    #: When the presented secret stops working: None for a current secret.
    valid_until: datetime | None
    digest: str
    #: The allow list as stored (normalised networks, space-separated), or
    #: None for anywhere.
    allowed_ips: str | None = None
    #: The addresses of the recent clients, newest first.
    recent_ips: tuple[str, ...] = ()
    #: A decoy: answered like an unknown token, and it raises an alarm.
    canary: bool = False


def _decode(row: Sequence[Any]) -> TokenRow:
    (id_, name, type_, resource, scopes, created_by,
     revoked_at, expires_at, last_used_at, valid_until, digest,
     allowed_ips, recent_ips, canary) = row  # fmt: skip
    return TokenRow(
        id_,
        name,
        type_,
        resource,
        tuple(scopes.split()),
        created_by,
        None if revoked_at is None else as_utc(revoked_at),
        None if expires_at is None else as_utc(expires_at),
        None if last_used_at is None else as_utc(last_used_at),
        None if valid_until is None else as_utc(valid_until),
        digest,
        allowed_ips,
        tuple(recent_ips.split()) if recent_ips else (),
        bool(canary),
    )


def can_authenticate(row: TokenRow) -> bool:
    """Whether a row could let its request in: only those are answered from
    the SQLite row cache, so a failing known token (revoked, expired, a
    canary, a rotated-out secret) costs the same lookup as an unknown one
    and its answer's timing does not tell that it exists."""
    if row.revoked_at is not None or row.canary:
        return False
    if row.expires_at is None and row.valid_until is None:
        return True
    now = utcnow()
    return (row.expires_at is None or now < row.expires_at) and (
        row.valid_until is None or now < row.valid_until
    )


def lookup_statement(count: int) -> sa.Select[Any]:
    """The one statement of the request path: token and secret by digest."""
    t, s = TOKENS, SECRETS
    digests: list[sa.BindParameter[Any]] = [sa.bindparam(f"d{i}") for i in range(count)]
    return (
        sa.select(
            t.c.id,
            t.c.name,
            t.c.type,
            t.c.resource,
            sa.type_coerce(t.c.scopes, sa.Text),
            t.c.created_by,
            t.c.revoked_at,
            t.c.expires_at,
            t.c.last_used_at,
            s.c.valid_until,
            s.c.digest,
            t.c.allowed_ips,
            t.c.recent_ips,
            t.c.canary,
        )  # fmt: skip
        .select_from(s.join(t, t.c.id == s.c.token_id))
        .where(s.c.digest.in_(digests) if count > 1 else s.c.digest == digests[0])
    )


class RequestStore(RequestWrites):
    """The request path's lookup for one app, beside its writes
    (:class:`~flask_accesstokens.storewrites.RequestWrites`)."""

    def __init__(self, state: AppState) -> None:
        super().__init__(state)
        self._compiled: dict[int, tuple[str, Any]] = {}
        self._lock = threading.Lock()
        self._pool: Pool | None = None
        #: Connections checked out of our pool once and kept between
        #: lookups (a stack: the most recently used first), so a lookup pays
        #: neither the pool's checkout nor its reset on return.
        self._idle: list[PoolProxiedConnection] = []
        self._keep = 0
        #: PostgreSQL: the last row read per digest, as the driver gave it and
        #: decoded, so an unchanged row is not decoded (or built) again.
        self._decoded: dict[str, tuple[Any, TokenRow]] = {}
        self._pid = os.getpid()
        self._forks = _forks.count
        #: SQLite: the watcher of the database file's commit stamp (False
        #: until a connection has queried, None where it cannot be used), and
        #: the rows read under one stamp.
        self._change: SQLiteChange | None | bool = False
        self._cache: tuple[bytes | None, dict[str, TokenRow]] = (None, {})
        #: A forked child's inherited watcher: kept, never closed, since
        #: closing a descriptor of the database drops this process's SQLite
        #: locks on it (see ``sqlitechange.py``).
        self._parked: object = None
        #: PostgreSQL: this process's kept rows and their listener
        #: (``pgchange.py``); False until the first query, None without one.
        self._pg: PgChange | None | bool = False
        #: PostgreSQL: the hot standby lookups may read
        #: (``ACCESSTOKENS_READ_DATABASE_URI``, ``standby.py``); False until
        #: the first query, None without one.
        self._standby: Standby | None | bool = False

    # -- connections ---------------------------------------------------------

    def _own_pool(self) -> Pool:
        pool = self._pool
        if pool is not None and self._forks == _forks.count:
            return pool
        with self._lock:
            if self._pool is None or self._forks != _forks.count:
                # New, or forked: a child never uses (or closes) the parent's.
                if self._pool is not None:
                    self._parked = (self._change, self._pg, self._standby)
                    self._change = self._pg = self._standby = False
                    self._cache = (None, {})
                    self._idle = []  # the parent's: never used, never closed
                self._pid, self._forks = os.getpid(), _forks.count
                self._pool = self.engine.pool.recreate()
                # As many kept as the pool keeps; none from a NullPool.
                self._keep = self._pool.size() if isinstance(self._pool, QueuePool) else 0
                weakref.finalize(self, _dispose, self._pool, self._idle, self._pid)
            return self._pool

    def dispose(self) -> None:
        """Close the request path's idle connections and the file watcher:
        at shutdown or in tests, when the database is no longer in use."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                close_idle(self._idle)
                self._pool.dispose()
                change, self._change = self._change, False
                self._cache = (None, {})
                pg, self._pg = self._pg, False
                if isinstance(pg, PgChange):
                    pg.close()
                standby, self._standby = self._standby, False
                if isinstance(standby, Standby):
                    standby.close()
                if isinstance(change, SQLiteChange):
                    change.close()

    # -- the lookup ------------------------------------------------------------

    def find(self, digests: list[str]) -> TokenRow | None:
        """The row of the first digest found, or None. Raises
        :class:`StorageUnavailable` when the database cannot answer."""
        change = self._change
        if change and self._forks == _forks.count:
            # SQLite, the common case: a row read under the file's current
            # commit stamp, without a statement.
            assert isinstance(change, SQLiteChange)
            stamp = change.version()
            if stamp is not None:
                cached_stamp, rows = self._cache
                if stamp == cached_stamp:
                    row = rows.get(digests[0])
                    if row is not None and can_authenticate(row):
                        return row
        else:
            stamp = None
        pg, ticket = self._pg, None
        if pg and self._forks == _forks.count:
            # PostgreSQL: a row kept while the listener vouches for it.
            assert isinstance(pg, PgChange)
            row = pg.get(digests[0])
            if row is not None:
                return row  # type: ignore[no-any-return]
            ticket = pg.ticket()
        engine = self.engine
        try:
            if self.shared:
                conn = self._state.db.session.connection()
                found = conn.execute(lookup_statement(len(digests)), _named(digests)).first()
                return None if found is None else _decode(found)
            if stamp is not None:
                assert isinstance(change, SQLiteChange)
                return self._find_stamped(engine, digests, change, stamp)
            row = self._query(engine, digests, ticket=ticket)
            if ticket is not None:
                assert isinstance(pg, PgChange)
                pg.keep(digests[0], row, ticket)
            return row
        except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as e:
            log.error("access token lookup failed: %s", type(e).__name__)
            raise StorageUnavailable() from None

    def _find_stamped(
        self, engine: Engine, digests: list[str], change: SQLiteChange, stamp: bytes
    ) -> TokenRow | None:
        """A row not cached under ``stamp``. Rows stay true while the file's
        commit stamp is unchanged: nobody, in any process, committed since
        they were read. The stamp was read before the query and is read again
        after; the row is kept under it only when both agree, so a commit
        racing the query costs a miss, never a stale hit. Each stamp has its
        own dict, so a late writer can only fill a dict no current stamp will
        read."""
        digest = digests[0]
        cached_stamp, rows = self._cache
        if stamp != cached_stamp:
            rows = {}
        row = self._query(engine, digests, cache=False)
        # Unknown digests are not remembered (no flooding), nor rows that
        # cannot authenticate (no timing oracle).
        if (
            row is not None
            and can_authenticate(row)
            and len(rows) < MAX_CACHED_ROWS
            and change.version() == stamp
        ):
            rows[digest] = row
            self._cache = (stamp, rows)
        return row

    def _query(
        self, engine: Engine, digests: list[str], cache: bool = True, ticket: int | None = None
    ) -> TokenRow | None:
        sql, to_params = self._statement(engine, len(digests))
        pool = self._own_pool()
        if self._pg is False:
            self._pg = make_pgchange(engine, self._state.settings, owner=self)
            self._standby = self._make_standby(engine)
        standby = self._standby
        if isinstance(standby, Standby) and standby.usable(self._primary):
            found = self._on_standby(standby, sql, to_params(digests), digests[0], ticket)
            if found is not _PRIMARY:
                return found  # type: ignore[return-value]
        conn = self._checkout(pool)
        try:
            try:
                row = self._run(conn, sql, to_params(digests), digests[0], cache)
            except engine.dialect.loaded_dbapi.Error:
                if not getattr(conn.dbapi_connection, "closed", False):
                    raise  # a timeout or a bad query: retrying cannot help
                # The server dropped this idle connection (a restart, a
                # failover): so it did its siblings. Start afresh, once.
                conn.invalidate()
                close_idle(self._idle)
                pool.dispose()
                conn = pool.connect()
                row = self._run(conn, sql, to_params(digests), digests[0], cache)
        except BaseException:
            conn.close()
            raise
        self._checkin(conn)
        return row

    def _checkout(self, pool: Pool) -> PoolProxiedConnection:
        """A kept connection, else one from our pool."""
        try:
            return self._idle.pop()
        except IndexError:
            return pool.connect()

    def _checkin(self, conn: PoolProxiedConnection) -> None:
        """Keep it for the next lookup (no checkout, no reset), or give it back."""
        if len(self._idle) < self._keep:
            self._idle.append(conn)
        else:
            conn.close()

    def _on_standby(
        self, standby: Standby, sql: str, params: Any, digest: str, ticket: int | None
    ) -> TokenRow | None | object:
        """The lookup on the standby, or :data:`_PRIMARY` when the primary
        must answer: the standby failed, or (with the row cache) has not yet
        replayed every change the listener has heard of (``standby.py``)."""
        pg = self._pg
        floor = pg.floor(ticket) if isinstance(pg, PgChange) else None
        if isinstance(pg, PgChange) and floor is None:
            return _PRIMARY  # a change was just notified: no sync vouches yet
        try:
            conn = standby.connect()
        except standby.errors as e:
            standby.failed(e)  # the primary answers, until the next check
            return _PRIMARY
        try:
            if floor is not None and not standby.replayed(self._cursor(conn), floor):
                standby.release(conn)
                return _PRIMARY
            row = self._run(conn, sql, params, digest, True)
        except standby.errors as e:
            conn.invalidate()
            standby.failed(e)
            return _PRIMARY
        except BaseException:
            conn.invalidate()
            raise
        standby.release(conn)
        return row

    def _make_standby(self, engine: Engine) -> Standby | None:
        uri = self._state.settings.read_database_uri
        if uri is None:
            return None
        if engine.dialect.name != "postgresql":
            log.error(
                "ACCESSTOKENS_READ_DATABASE_URI ignored: the app's database is not PostgreSQL"
            )
            return None
        if uri.drivername == "postgresql":  # the app's driver, installed
            uri = uri.set(drivername=engine.url.drivername)
        try:
            return Standby(uri, self._keep)
        except Exception as e:  # a driver missing: the primary answers
            log.error("ACCESSTOKENS_READ_DATABASE_URI unusable: %s", type(e).__name__)
            return None

    @contextmanager
    def _primary(self) -> Iterator[Any]:
        """A DBAPI connection to the primary, lent for a standby's check."""
        conn = self._checkout(self._own_pool())
        try:
            yield conn.dbapi_connection
        except BaseException:
            conn.invalidate()
            raise
        self._checkin(conn)

    def _written(self, token_id: str) -> None:
        """This worker wrote the token's usage: its kept row is out of date
        now, not only once the notification comes back."""
        pg = self._pg
        if isinstance(pg, PgChange):
            pg.forget(token_id)

    def _revoked(self) -> None:
        """A reused secret's token was revoked here: return only once every
        worker has let go of what it kept (PostgreSQL's sync bound)."""
        if pg_enabled(self._state.settings, self.engine):
            settle(self._state.settings)

    def _run(self, conn: Any, sql: str, params: Any, digest: str, cache: bool) -> TokenRow | None:
        info = conn.info
        dbapi = conn.dbapi_connection
        if self.engine.dialect.name == "sqlite":
            if not cache:
                found = dbapi.execute(sql, params).fetchone()
                return None if found is None else _decode(found)
            if self._change is False:
                # Made beside a connection that has queried: in WAL mode its
                # shared-memory lock keeps the -shm file in place.
                dbapi.execute("PRAGMA data_version").fetchone()
                change = self._change = SQLiteChange.for_connection(dbapi)
                stamp = None if change is None else change.version()
                if change is not None and stamp is not None:
                    found = dbapi.execute(sql, params).fetchone()
                    row = None if found is None else _decode(found)
                    if row is not None and can_authenticate(row) and change.version() == stamp:
                        self._cache = (stamp, {digest: row})
                    return row
            # Rows stay true while nobody, in any process, commits: then
            # no token was revoked, rotated or used since they were read.
            version = dbapi.execute("PRAGMA data_version").fetchone()[0]
            rows: dict[str, TokenRow] = info.setdefault("accesstokens.rows", {})
            if version != info.get("accesstokens.version") or len(rows) > MAX_CACHED_ROWS:
                rows.clear()
                info["accesstokens.version"] = version
            elif digest in rows and can_authenticate(rows[digest]):
                return rows[digest]
            cursor = dbapi.execute(sql, params)
            found = cursor.fetchone()
            cursor.close()
            if found is None:  # unknown digests are not remembered: no flooding
                return None
            row = _decode(found)
            if can_authenticate(row):  # nor failing ones: no timing oracle
                rows[digest] = row
            return row
        cursor = info.get("accesstokens.cursor")
        if cursor is None:
            cursor = self._cursor(conn)
        cursor.execute(sql, params)
        found = cursor.fetchone()
        if found is None:
            return None
        decoded = self._decoded.get(digest)
        if decoded is not None and decoded[0] == found:
            return decoded[1]
        row = _decode(found)
        if len(self._decoded) >= MAX_CACHED_ROWS:
            self._decoded = {}
        self._decoded[digest] = (found, row)
        return row

    def _cursor(self, conn: Any) -> Any:
        """A PostgreSQL connection's kept cursor, the connection made ready
        first: autocommit (no transaction stays open) and the timeout."""
        info = conn.info
        cursor = info.get("accesstokens.cursor")
        if cursor is None:
            dbapi = conn.dbapi_connection
            dbapi.autocommit = True
            if self._timeout:
                with dbapi.cursor() as setup:
                    setup.execute(f"SET statement_timeout = {int(self._timeout)}")
            cursor = info["accesstokens.cursor"] = dbapi.cursor()
        return cursor

    def _statement(self, engine: Engine, count: int) -> tuple[str, Any]:
        compiled = self._compiled.get(count)
        if compiled is None:
            statement = lookup_statement(count).compile(dialect=engine.dialect)
            compiled = (statement.string, _param_builder(statement.positiontup))
            self._compiled[count] = compiled
        return compiled


#: Said by :meth:`RequestStore._on_standby` when the primary must answer.
_PRIMARY = object()


class _Forks:
    """How many times this process is a forked child of the one that
    imported us: bumped in the child right after ``fork``, so the request
    path notices a fork with an attribute read, not a ``getpid`` system call
    per request."""

    count = 0

    @classmethod
    def forked(cls) -> None:
        cls.count += 1


_forks = _Forks
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Forks.forked)


def _dispose(pool: Pool, idle: list[PoolProxiedConnection], pid: int) -> None:
    if os.getpid() == pid:  # never close a parent's connections in a child
        close_idle(idle)
        pool.dispose()


def _named(digests: list[str]) -> dict[str, str]:
    return {f"d{i}": d for i, d in enumerate(digests)}


def _param_builder(positions: Sequence[str] | None) -> Any:
    """Parameters in the shape the driver's paramstyle wants."""
    if positions is None:
        return _named
    order = [int(name[1:]) for name in positions]
    return lambda ds: [ds[i] for i in order]
