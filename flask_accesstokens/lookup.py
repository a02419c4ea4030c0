"""The request path's lookup: one indexed query by digest, compiled once,
run on pooled raw driver connections in autocommit mode.

No ORM session and no transaction stays open, so every request sees the
latest committed revocation. On SQLite, rows are remembered only while the
database file proves nobody has committed anything since: read from its
header without a statement where ``sqlitechange`` can vouch for it, else by
``PRAGMA data_version``.
In-memory SQLite and drivers we do not know go through SQLAlchemy Core
instead: same statement, same rows, a little slower.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from .errors import StorageUnavailable
from .models import as_utc
from .models import SECRETS
from .models import TOKENS
from .sqlitechange import SQLiteChange

log = logging.getLogger("flask_accesstokens")

#: Idle lookup connections kept per app and process; more are closed.
MAX_IDLE = 8
#: Connections a forked child inherited: referenced so they are never closed.
_inherited: list[Any] = []

#: Turns the digests into the parameters the driver's paramstyle wants.
Params = Callable[[list[str]], Any]


class TokenRow(NamedTuple):
    """What the request path needs of a token and of the presented secret,
    decoded: scopes split, datetimes aware UTC."""

    id: str
    name: str
    type: str
    workspace: str
    project: str | None
    repository: str | None
    scopes: tuple[str, ...]
    created_by: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    #: When the presented secret stops working: None for a current secret.
    valid_until: datetime | None
    digest: str


def _decode(row: Sequence[Any]) -> TokenRow:
    (id_, name, type_, workspace, project, repository, scopes, created_by,
     revoked_at, expires_at, last_used_at, valid_until, digest) = row  # fmt: skip
    return TokenRow(
        id_,
        name,
        type_,
        workspace,
        project,
        repository,
        tuple(scopes.split()),
        created_by,
        None if revoked_at is None else as_utc(revoked_at),
        None if expires_at is None else as_utc(expires_at),
        None if last_used_at is None else as_utc(last_used_at),
        None if valid_until is None else as_utc(valid_until),
        digest,
    )


class Lookup:
    """Finds the row of a digest; raises :class:`StorageUnavailable` when the
    database cannot answer."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        statement_timeout_ms: int | None,
        session_connection: Callable[[], Connection],
    ) -> None:
        self._engine = engine
        self._session_connection = session_connection
        self._timeout = statement_timeout_ms
        self._compiled: dict[int, tuple[Any, str, Params]] = {}
        self._idle: list[_RawConnection] = []
        self._pid = os.getpid()
        self._raw = False
        self._engine_cache: Engine | None = None
        #: One watcher of the SQLite file per app and process, shared by the
        #: lookup's connections; False until a connection has asked for it.
        self._change: SQLiteChange | None | bool = False

    @staticmethod
    def statement(count: int) -> sa.Select[Any]:
        t, s = TOKENS, SECRETS
        digests: list[sa.BindParameter[Any]] = [sa.bindparam(f"d{i}") for i in range(count)]
        return (
            sa.select(
                t.c.id,
                t.c.name,
                t.c.type,
                t.c.workspace,
                t.c.project,
                t.c.repository,
                sa.type_coerce(t.c.scopes, sa.Text),
                t.c.created_by,
                t.c.revoked_at,
                t.c.expires_at,
                t.c.last_used_at,
                s.c.valid_until,
                s.c.digest,
            )  # fmt: skip
            .select_from(s.join(t, t.c.id == s.c.token_id))
            .where(s.c.digest.in_(digests) if count > 1 else s.c.digest == digests[0])
        )

    def find(self, digests: list[str]) -> TokenRow | None:
        engine = self._engine_cache
        if engine is None:
            engine = self._engine_cache = self._engine()
            self._raw = _raw_capable(engine)
        try:
            if not self._raw:
                return self._find_core(engine, digests)
            return self._find_raw(engine, digests)
        except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as e:
            log.error("access token lookup failed: %s", type(e).__name__)
            raise StorageUnavailable() from None

    def _find_core(self, engine: Engine, digests: list[str]) -> TokenRow | None:
        statement = self.statement(len(digests))
        params = {f"d{i}": d for i, d in enumerate(digests)}
        if isinstance(engine.pool, StaticPool):
            # The app's session holds the only connection (in-memory SQLite):
            # closing ours would roll back its work, so borrow the session's.
            row = self._session_connection().execute(statement, params).first()
        else:
            with engine.connect() as conn:
                row = conn.execute(statement, params).first()
        return None if row is None else _decode(row)

    def _find_raw(self, engine: Engine, digests: list[str]) -> TokenRow | None:
        key = len(digests)
        if key not in self._compiled:
            compiled = self.statement(key).compile(dialect=engine.dialect)
            self._compiled[key] = (compiled, compiled.string, _param_builder(compiled.positiontup))
        _, sql, to_params = self._compiled[key]
        conn, reused = self._checkout(engine)
        try:
            row = conn.find(sql, to_params, digests)
        except BaseException:
            broken = reused and conn.broken
            conn.close()
            if not broken:  # a timeout or a bad query: retrying cannot help
                raise
            # The server went away while this connection sat idle (a restart,
            # a failover): so did its siblings and the pool's. Start afresh, once.
            self.dispose()
            engine.dispose()
            conn = self._connect(engine)
            try:
                row = conn.find(sql, to_params, digests)
            except BaseException:
                conn.close()
                raise
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:  # after a burst, keep only a few connections open
            conn.close()
        return row

    def _checkout(self, engine: Engine) -> tuple[_RawConnection, bool]:
        if self._pid != os.getpid():
            # Forked: never use the parent's connections, and never close
            # them either (that could end the parent's sessions): keep them.
            _inherited.extend(self._idle)
            _inherited.append(self._change)  # its descriptors, likewise
            self._idle, self._pid = [], os.getpid()
            self._change = False
            engine.dispose(close=False)
        try:
            return self._idle.pop(), True
        except IndexError:
            return self._connect(engine), False

    def _connect(self, engine: Engine) -> _RawConnection:
        proxy = engine.raw_connection()
        proxy.detach()
        conn = proxy.dbapi_connection
        assert conn is not None
        if engine.dialect.name == "sqlite":
            conn.isolation_level = None
            return _SQLiteConnection(conn, self._watcher)
        conn.autocommit = True
        if self._timeout:
            cursor = conn.cursor()
            cursor.execute(f"SET statement_timeout = {int(self._timeout)}")
            cursor.close()
        return _RawConnection(conn)

    def _watcher(self, conn: Any) -> SQLiteChange | None:
        """The shared watcher of the database file, made on first request."""
        if self._change is False:
            self._change = SQLiteChange.for_connection(conn)
        assert not isinstance(self._change, bool)
        return self._change

    def dispose(self) -> None:
        """Close every idle connection and the file watcher: at teardown, when
        the database is no longer in use (see ``SQLiteChange.close``)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        change, self._change = self._change, False
        if isinstance(change, SQLiteChange):
            change.close()


class _RawConnection:
    """A driver connection in autocommit mode: each lookup sees the latest
    committed state."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def find(self, sql: str, to_params: Params, digests: list[str]) -> TokenRow | None:
        cursor = self.conn.cursor()
        cursor.execute(sql, to_params(digests))
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else _decode(row)

    @property
    def broken(self) -> bool:
        """Whether the driver gave up on this connection (psycopg knows)."""
        return bool(getattr(self.conn, "closed", False))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


class _SQLiteConnection(_RawConnection):
    """Remembers rows it found until anyone commits anything.

    This connection never writes. While the database file's commit stamp (see
    ``sqlitechange.py``) is unchanged, no token was revoked, rotated or used
    since the rows were read, and they are still true: revocation is seen on
    the next request, as without the cache. Time-based checks (expiry, grace
    windows) run on every request anyway. When the stamp cannot be trusted,
    ``PRAGMA data_version`` decides, as it did before the stamp.

    The stamp is read before the query and again after it; rows are kept
    under the first value only when both agree, so a commit racing the query
    can only cost a miss. The stamp is only read on a connection that has
    already queried: in WAL mode its shared-memory lock then keeps the
    ``-shm`` file in place under the mapping.
    """

    MAX_ROWS = 10_000

    def __init__(self, conn: Any, watcher: Callable[[Any], SQLiteChange | None]) -> None:
        super().__init__(conn)
        self.version: Any = None
        self.rows: dict[str, TokenRow] = {}
        self.change: SQLiteChange | None = None
        self._watcher: Callable[[Any], SQLiteChange | None] | None = watcher

    def find(self, sql: str, to_params: Params, digests: list[str]) -> TokenRow | None:
        change = self.change
        stamp = None if change is None else change.version()
        version = stamp if stamp is not None else self._data_version()
        digest = digests[0]
        rows = self.rows
        if version == self.version:
            row = rows.get(digest)
            if row is not None:
                return row
        else:
            rows.clear()
            self.version = None
        row = super().find(sql, to_params, digests)
        if stamp is not None and change is not None and change.version() != stamp:
            return row  # a commit (or a torn read) raced the query: keep nothing
        self.version = version
        if row is not None and len(rows) < self.MAX_ROWS:
            rows[digest] = row  # unknown digests are not remembered: no flooding
        if self._watcher is not None:  # queried once: the file may be watched
            self.change, self._watcher = self._watcher(self.conn), None
        return row

    def _data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])


def _param_builder(positions: Sequence[str] | None) -> Params:
    """Parameters in the shape the driver's paramstyle wants."""
    if positions is None:
        return lambda ds: {f"d{i}": d for i, d in enumerate(ds)}
    order = [int(name[1:]) for name in positions]
    return lambda ds: [ds[i] for i in order]


def _raw_capable(engine: Engine) -> bool:
    if isinstance(engine.pool, StaticPool):
        return False
    if engine.dialect.name == "sqlite":
        return engine.url.database not in (None, "", ":memory:")
    return engine.dialect.name == "postgresql" and engine.dialect.driver in ("psycopg", "psycopg2")
