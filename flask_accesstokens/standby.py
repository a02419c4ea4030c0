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

from .models import TOKENS
from .pgchange import CONNECT_OPTIONS

log = logging.getLogger("flask_accesstokens")

#: Seconds between checks of a standby (in each worker).
RECHECK = 10.0

#: Reads no table of ours; the last two tell the database and the tables
#: its ``search_path`` finds, which must be the primary's.
_STANDBY_SQL = (
    "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver),"
    " (SELECT conninfo FROM pg_stat_wal_receiver), current_setting('cluster_name'),"
    " (SELECT system_identifier FROM pg_control_system()),"
    " current_database(), to_regclass(%s)::oid"
)
_PRIMARY_SQL = (
    "SELECT pg_is_in_recovery(), current_setting('synchronous_commit'),"
    " (SELECT system_identifier FROM pg_control_system()),"
    " current_database(), to_regclass(%s)::oid,"
    " ARRAY(SELECT sync_state::text FROM pg_stat_replication WHERE application_name = %s)"
)
_CONNINFO = re.compile(r"(?:^|\s)(application_name|fallback_application_name)=(\S+)")


def application_name(conninfo: str, cluster_name: str) -> str:
    """The name a WAL receiver gives the primary, from the connection
    string PostgreSQL shows (unquoted ``key=value`` pairs):
    ``application_name``, else libpq's fallback (the standby's
    ``cluster_name``, else ``walreceiver``)."""
    found = dict(_CONNINFO.findall(conninfo))
    name = found.get("application_name") or found.get("fallback_application_name")
    return name or cluster_name or "walreceiver"


def _one(dbapi: Any, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """One row, leaving no transaction open on a pooled connection."""
    try:
        with dbapi.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    finally:
        if not dbapi.autocommit:
            dbapi.rollback()
    return tuple(row)


def check_standby(standby: Any) -> tuple[str | None, tuple[Any, ...]]:
    """The standby's half of :func:`check`: a reason, or None and what the
    primary must agree with."""
    row = _one(standby, _STANDBY_SQL, (TOKENS.name,))
    in_recovery, status, conninfo, cluster_name, system_id, database, table = row
    if not in_recovery:
        return "it is not a standby (pg_is_in_recovery() is false)", ()
    if status is None and conninfo is None:
        return "its WAL receiver is hidden: grant pg_read_all_stats to this role", ()
    if status != "streaming":
        return f"its WAL receiver is not streaming ({status})", ()
    if conninfo is None:
        return "its WAL receiver's conninfo is hidden: grant pg_read_all_stats to this role", ()
    return None, (application_name(conninfo, cluster_name), system_id, database, table)


def check_primary(primary: Any, expected: tuple[Any, ...]) -> str | None:
    """The primary's half of :func:`check`."""
    name, system_id, database, table = expected
    row = _one(primary, _PRIMARY_SQL, (TOKENS.name, name))
    recovering, commit, primary_id, primary_database, primary_table, states = row
    if recovering:
        return "the app's database is itself a standby"
    if primary_id != system_id:
        return "it is not a standby of the app's database (another system identifier)"
    if (database, table) != (primary_database, primary_table) or table is None:
        return "it does not show the app's database and tables (database or search_path differ)"
    if commit != "remote_apply":
        return f"synchronous_commit is {commit!r} on the primary, not 'remote_apply'"
    if states != ["sync"]:
        shown = ", ".join(states) or "none"
        return (
            f"it is not the one synchronous standby named {name!r} on the primary"
            f" (sync_state: {shown})"
        )
    return None


def check(primary: Any, standby: Any) -> str | None:
    """Why lookups may not be read from ``standby`` (DBAPI connections to
    both servers), or None when they may."""
    reason, expected = check_standby(standby)
    return reason if reason is not None else check_primary(primary, expected)


class Standby:
    """One worker process's connections to a standby, and whether they may
    be used now. Made in the process that uses it (after ``fork``)."""

    def __init__(self, url: sa.URL, keep: int) -> None:
        # A silent network must fail a lookup within seconds (then the
        # primary answers), not hang it for the kernel's minutes.
        options = {k: v for k, v in CONNECT_OPTIONS.items() if k not in url.query}
        options["application_name"] = url.query.get("application_name", "accesstokens-standby")
        self.engine = sa.create_engine(
            url, pool_size=max(keep, 1), pool_timeout=2, connect_args=options
        )
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
                reason, expected = check_standby(conn.dbapi_connection)
            except BaseException:
                conn.invalidate()
                raise
            self.release(conn)
            if reason is None:
                with primary() as dbapi:
                    reason = check_primary(dbapi, expected)
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

    def replayed(self, cursor: Any, floor: str) -> bool:
        """Has the standby replayed the primary's WAL up to ``floor``?"""
        cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (floor,))
        row = cursor.fetchone()
        return row is not None and row[0] is True

    def connect(self) -> PoolProxiedConnection:
        """A kept connection, else one from the pool."""
        try:
            return self.idle.pop()
        except IndexError:
            return self.engine.pool.connect()

    def release(self, conn: PoolProxiedConnection) -> None:
        """Keep it for the next lookup, or give it back."""
        if len(self.idle) < self.keep:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close its connections (in the process that made it)."""
        self._exit()


def _close(engine: sa.Engine, idle: list[PoolProxiedConnection], pid: int) -> None:
    """At :meth:`Standby.close`, collection or exit."""
    if os.getpid() == pid:  # never a parent's connections in a child
        close_idle(idle)
        engine.dispose()


def close_idle(idle: list[PoolProxiedConnection]) -> None:
    while idle:
        try:
            idle.pop().close()
        except IndexError:
            return
