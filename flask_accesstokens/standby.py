"""May lookups be read from this PostgreSQL hot standby? Only under
revocation's promise.

A lookup may go to a standby only if no request that starts after a
revoking call returns can read the token's old state there. PostgreSQL
gives exactly that with ``synchronous_commit = remote_apply`` and the
standby among the synchronous ones: the primary's commit returns only once
the standby has applied it (and a ``NOTIFY`` of the change reaches listeners
only after that, so ``pgchange.py``'s argument holds unchanged).

So a worker checks before it sends a lookup to the standby, and again every
:data:`RECHECK` seconds:

- on the standby: it is in recovery, its WAL receiver is streaming, and it
  comes from the primary's cluster (the same system identifier);
- on the primary: commits made by our role wait for ``remote_apply``, and the
  standby, named by the application name its WAL receiver gives, is a
  synchronous standby (``sync_state = 'sync'``: a quorum or potential one
  may lag).

Anything else, an error included, sends lookups to the primary: never to a
standby nobody vouched for. The role needs ``pg_read_all_stats`` (or
``pg_monitor``) on both servers to see the replication views.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

log = logging.getLogger("flask_accesstokens")

#: Seconds between checks of a standby (in each worker).
RECHECK = 10.0

_STANDBY_SQL = (
    "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver),"
    " (SELECT conninfo FROM pg_stat_wal_receiver), current_setting('cluster_name'),"
    " (SELECT system_identifier FROM pg_control_system())"
)
_PRIMARY_SQL = (
    "SELECT pg_is_in_recovery(), current_setting('synchronous_commit'),"
    " (SELECT system_identifier FROM pg_control_system()),"
    " ARRAY(SELECT sync_state::text FROM pg_stat_replication WHERE application_name = %s)"
)
_CONNINFO = re.compile(
    r"(?:^|\s)(application_name|fallback_application_name)=('(?:[^'\\]|\\.)*'|\S+)"
)


def application_name(conninfo: str, cluster_name: str) -> str:
    """The name a WAL receiver gives the primary, from its connection string:
    ``application_name``, else libpq's fallback (the standby's
    ``cluster_name``, else ``walreceiver``)."""
    found = {key: value for key, value in _CONNINFO.findall(conninfo)}
    value = found.get("application_name") or found.get("fallback_application_name")
    if value is None:
        return cluster_name or "walreceiver"
    if value.startswith("'"):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _one(dbapi: Any, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    try:
        with dbapi.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    finally:
        if not dbapi.autocommit:
            dbapi.rollback()
    return tuple(row)


def check(primary: Any, standby: Any) -> str | None:
    """Why lookups may not be read from ``standby`` (DBAPI connections to
    both servers), or None when they may."""
    in_recovery, status, conninfo, cluster_name, standby_id = _one(standby, _STANDBY_SQL)
    if not in_recovery:
        return "it is not a standby (pg_is_in_recovery() is false)"
    if status != "streaming":
        return f"its WAL receiver is not streaming ({status or 'none'})"
    if conninfo is None:
        return "its WAL receiver's conninfo is hidden: grant pg_read_all_stats to this role"
    name = application_name(conninfo, cluster_name)
    recovering, commit, primary_id, states = _one(primary, _PRIMARY_SQL, (name,))
    if recovering:
        return "the app's database is itself a standby"
    if primary_id != standby_id:
        return "it is not a standby of the app's database (another system identifier)"
    if commit != "remote_apply":
        return f"synchronous_commit is {commit!r} on the primary, not 'remote_apply'"
    if not states or any(state != "sync" for state in states):
        return f"it is not a synchronous standby of the primary (application_name {name!r})"
    return None


class Standby:
    """One worker process's connections to a standby, and whether they may
    be used now. Made in the process that uses it (after ``fork``)."""

    def __init__(self, uri: str, keep: int) -> None:
        self.engine = sa.create_engine(uri, pool_size=max(keep, 1))
        #: What a lookup there may raise, and the primary then answers.
        self.errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            self.engine.dialect.loaded_dbapi.Error,
        )
        #: Connections kept between lookups, as the primary's are.
        self.idle: list[PoolProxiedConnection] = []
        self.keep = keep
        self._ok = False
        self._checked_at = -math.inf
        self._reason: str | None = "not checked yet"
        self._checking = threading.Lock()
        self._pid = os.getpid()
        self._exit = weakref.finalize(self, _close, self.engine, self.idle, self._pid)

    def usable(self, primary: Callable[[], AbstractContextManager[Any]]) -> bool:
        """Whether this lookup may go to the standby; checks it when the last
        check is old (``primary`` lends a DBAPI connection to the primary).
        While one thread checks, the others read the primary."""
        if time.monotonic() - self._checked_at < RECHECK:
            return self._ok
        if not self._checking.acquire(blocking=False):
            return False
        try:
            self._ok = False
            conn = self.connect()
            try:
                with primary() as dbapi:
                    reason = check(dbapi, conn.dbapi_connection)
            except BaseException:
                conn.invalidate()
                raise
            self.release(conn)
        except Exception as e:  # any failure means: not this time
            reason = f"it cannot be checked ({type(e).__name__})"
        finally:
            self._checked_at = time.monotonic()
            self._checking.release()
        self._set(reason)
        return self._ok

    def _set(self, reason: str | None) -> None:
        if reason != self._reason:
            if reason is None:
                log.info("access token lookups read the hot standby")
            else:
                log.error("access token lookups read the primary, not the standby: %s", reason)
        self._reason, self._ok = reason, reason is None

    @property
    def reason(self) -> str | None:
        """Why the standby is not used (None while it is)."""
        return self._reason

    def failed(self, error: BaseException) -> None:
        """A lookup failed on the standby: read the primary until the next
        check, and start its connections afresh."""
        self._checked_at = time.monotonic()
        self._set(f"a lookup failed there ({type(error).__name__})")
        close_idle(self.idle)
        self.engine.pool.dispose()

    def connect(self) -> PoolProxiedConnection:
        try:
            return self.idle.pop()
        except IndexError:
            return self.engine.pool.connect()

    def release(self, conn: PoolProxiedConnection) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._exit()


def _close(engine: sa.Engine, idle: list[PoolProxiedConnection], pid: int) -> None:
    if os.getpid() == pid:  # never a parent's connections in a child
        close_idle(idle)
        engine.dispose()


def close_idle(idle: list[PoolProxiedConnection]) -> None:
    while idle:
        try:
            idle.pop().close()
        except IndexError:
            return
