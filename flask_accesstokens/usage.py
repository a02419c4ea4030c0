"""Observed use on the request path: which granted scopes served a request,
and which resource inside the token's binding the route named.

A granted scope *served* a request when it holds, directly or by
implication, one of the scopes the route required (for ``any_of``, one of
those the token actually holds). Removing every scope that never served
would therefore have refused no request: that is the recommendation
``leastprivilege.py`` makes from these rows.

Recording costs no write per request. Each process remembers, per token,
what it has stored and when each was last seen since, and writes that at
most once per ``ACCESSTOKENS_LAST_USED_RESOLUTION`` per token, like last
use. A scope or resource this process has not stored yet is written at
once, within a budget of :data:`FIRST_USES_PER_MINUTE` per token, like new
client addresses: otherwise a scope used only between two coalesced writes
(and the process gone before the next) would look unused. A process that
starts anew writes each key it meets once more (an UPDATE of an existing
row); nothing is read on the request path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError

from .requirements import Requirement
from .resources import Resource
from .scopes import ScopeCatalog
from .store import RequestStore
from .tokens import AuthenticatedToken
from .usagemodels import MAX_RESOURCES_PER_TOKEN
from .usagemodels import RESOURCE_KEY_MAX_LENGTH
from .usagemodels import RESOURCE_USES
from .usagemodels import SCOPE_USES

log = logging.getLogger("flask_accesstokens")

#: First uses (a scope or a resource) written at once per token per minute
#: in one process; more wait for the coalesced write.
FIRST_USES_PER_MINUTE = 5
FIRST_USES_WINDOW = timedelta(minutes=1)
#: Tokens whose use one process remembers; past this, quiet ones are forgotten.
MAX_REMEMBERED_TOKENS = 10_000


class RouteResource(NamedTuple):
    """A resource a request named, by its stored key: beside scope names
    among the keys a worker remembers."""

    key: str


def resource_key(named: Mapping[str, str]) -> str:
    """How a route's resource is stored: what the route named, level by
    level from the top, as a resource key (``level=name/...``)."""
    return Resource("", named).key


def resource_of_key(key: str) -> dict[str, str]:
    """The resource (level -> name) a stored key names."""
    return Resource.from_key("", key).values


def served_scopes(
    catalog: ScopeCatalog, granted: tuple[str, ...], requirement: Requirement
) -> tuple[str, ...]:
    """The granted scopes that served a request to a route with this
    requirement: each holds (itself or by implication) a scope the route
    needed. For ``any_of`` only the required scopes the token holds count."""
    required = requirement.scopes
    if requirement.any_of:
        held = catalog.closure(granted)
        required = tuple(s for s in required if s in held)
    return tuple(g for g in granted if not catalog.closure((g,)).isdisjoint(required))


class _TokenUse:
    """What one process knows of one token's use."""

    __slots__ = (
        "stored",
        "pending",
        "unsaved",
        "resources",
        "flush_at",
        "budget",
        "budget_until",
        "full",
    )

    def __init__(self, flush_at: datetime) -> None:
        #: Keys (scope names, :class:`RouteResource` keys) known to be stored.
        self.stored: set[object] = set()
        #: Stored keys seen since the last write, and when last.
        self.pending: dict[object, datetime] = {}
        #: Keys seen but not yet stored (budget spent, or the write failed).
        self.unsaved: dict[object, datetime] = {}
        #: Resources stored or waiting to be: at most the cap per token.
        self.resources = 0
        self.flush_at = flush_at
        self.budget = FIRST_USES_PER_MINUTE
        self.budget_until = flush_at
        #: No further resource is recorded: the token is at the cap.
        self.full = False


class UsageRecorder:
    """One app's recording of observed use, shared by its threads."""

    def __init__(
        self,
        store: RequestStore,
        catalog: ScopeCatalog,
        resolution: timedelta,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.resolution = resolution
        self._lock = threading.Lock()
        self._tokens: dict[str, _TokenUse] = {}
        #: (granted, required, any_of) -> the granted scopes that serve it.
        self._served: dict[tuple[Sequence[str], tuple[str, ...], bool], tuple[str, ...]] = {}

    def record(
        self,
        token: AuthenticatedToken,
        requirement: Requirement,
        named: Mapping[str, str] | None,
        now: datetime,
    ) -> None:
        """Note one accepted request, and the resource inside the token's
        binding that it named (``named``, None for a scope-only or listing
        route). Never fails it: a write that fails is
        logged, and what it carried is tried again with the next write."""
        key = (token.scopes, requirement.scopes, requirement.any_of)
        served = self._served.get(key)
        if served is None:
            served = served_scopes(self.catalog, tuple(token.scopes), requirement)
            if len(self._served) >= MAX_REMEMBERED_TOKENS:
                self._served.clear()
            self._served[key] = served
        resource = RouteResource(resource_key(named)) if named else None
        use = self._tokens.get(token.id)
        if use is None:
            use = self._remember(token.id, now)
        stored = use.stored
        pending = use.pending
        new: list[object] | None = None
        for scope in served:
            if scope in stored:
                pending[scope] = now
            elif scope in use.unsaved:
                use.unsaved[scope] = now
            else:
                new = [scope] if new is None else [*new, scope]
        if resource is not None:
            if resource in stored:
                pending[resource] = now
            elif resource in use.unsaved:
                use.unsaved[resource] = now
            elif not use.full:
                new = [resource] if new is None else [*new, resource]
        if new is not None:
            self._first_uses(token.id, use, new, now)
        if now >= use.flush_at:
            self.flush(token.id, use, now)

    def _remember(self, token_id: str, now: datetime) -> _TokenUse:
        with self._lock:
            use = self._tokens.get(token_id)
            if use is not None:
                return use
            if len(self._tokens) >= MAX_REMEMBERED_TOKENS:
                # Keep those with something still to write; a token with
                # only freshness pending loses at most one resolution of it.
                kept = {k: u for k, u in self._tokens.items() if u.unsaved}
                self._tokens = kept if len(kept) < MAX_REMEMBERED_TOKENS else {}
            use = self._tokens[token_id] = _TokenUse(now + self.resolution)
            use.budget_until = now + FIRST_USES_WINDOW
            return use

    def _first_uses(self, token_id: str, use: _TokenUse, keys: list[object], now: datetime) -> None:
        """Write keys never stored by this process at once, while the
        token's budget lasts; the rest wait for the coalesced write."""
        with self._lock:
            if now >= use.budget_until:
                use.budget, use.budget_until = FIRST_USES_PER_MINUTE, now + FIRST_USES_WINDOW
            due: list[object] = []
            for key in keys:
                if key in use.stored or key in use.unsaved:
                    continue  # another thread got there first
                if isinstance(key, RouteResource):
                    if use.resources >= MAX_RESOURCES_PER_TOKEN:
                        use.full = True  # at the cap: not remembered, not written
                        continue
                    use.resources += 1
                if use.budget > 0:
                    use.budget -= 1
                    due.append(key)
                else:
                    use.unsaved[key] = now
        for key in due:
            self._write_new(token_id, use, key, now)

    def flush(self, token_id: str, use: _TokenUse, now: datetime) -> None:
        """Write what this process saw of a token since its last write: one
        UPDATE per table for stored keys, an upsert per unsaved one."""
        with self._lock:
            if now < use.flush_at:
                return  # another thread just did
            use.flush_at = now + self.resolution
            pending, use.pending = use.pending, {}
            unsaved, use.unsaved = use.unsaved, {}
        if pending:
            self._write_known(token_id, pending)
        for key, seen in unsaved.items():  # admitted under the cap when first seen
            self._write_new(token_id, use, key, seen)

    # -- writes ----------------------------------------------------------------

    def _write_known(self, token_id: str, pending: dict[object, datetime]) -> None:
        scopes = [
            {"t": token_id, "k": k, "at": at} for k, at in pending.items() if isinstance(k, str)
        ]
        resources = [
            {"t": token_id, "k": k.key, "at": at}
            for k, at in pending.items()
            if isinstance(k, RouteResource)
        ]
        try:
            with self.store.transaction() as conn:
                for table, key, rows in (
                    (SCOPE_USES, "scope", scopes),
                    (RESOURCE_USES, "resource", resources),
                ):
                    if rows:
                        conn.execute(_update(table, key), rows)
        except SQLAlchemyError:
            log.warning("could not record the use of access token %s", token_id, exc_info=True)

    def _write_new(self, token_id: str, use: _TokenUse, key: object, at: datetime) -> None:
        """Store one key: UPDATE its row if some process stored it before,
        else INSERT it (a resource only below the cap). Remembered as stored
        once written; kept for the next coalesced write if the write failed."""
        if isinstance(key, RouteResource):
            table, column, value = RESOURCE_USES, "resource", key.key
            if len(value) > RESOURCE_KEY_MAX_LENGTH:
                return
        else:
            table, column, value = SCOPE_USES, "scope", str(key)
        params = {"t": token_id, "k": value, "at": at}
        try:
            with self.store.transaction() as conn:
                if conn.execute(_touch(table, column), params).rowcount:
                    written = True
                else:
                    written = bool(conn.execute(_insert(table, column), params).rowcount)
        except IntegrityError:
            written = True  # another process inserted it meanwhile
        except SQLAlchemyError:
            log.warning("could not record the use of access token %s", token_id, exc_info=True)
            with self._lock:
                use.unsaved[key] = at
            return
        with self._lock:
            if written:
                use.stored.add(key)
            elif table is RESOURCE_USES:
                use.full = True  # the insert found the token at its cap
                use.resources -= 1


def _update(table: sa.Table, column: str) -> sa.Update:
    last = table.c.last_needed if table is SCOPE_USES else table.c.last_used
    stamp = sa.bindparam("at", type_=last.type)
    return (
        table.update()
        .where(
            table.c.token_id == sa.bindparam("t"),
            table.c[column] == sa.bindparam("k"),
            last < stamp,
        )
        .values({last.name: stamp})
    )


def _touch(table: sa.Table, column: str) -> sa.Update:
    """Whether the row exists (rowcount), moving its time forward only."""
    last = table.c.last_needed if table is SCOPE_USES else table.c.last_used
    stamp = sa.bindparam("at", type_=last.type)
    return (
        table.update()
        .where(table.c.token_id == sa.bindparam("t"), table.c[column] == sa.bindparam("k"))
        .values({last.name: sa.case((last < stamp, stamp), else_=last)})
    )


def _insert(table: sa.Table, column: str) -> sa.Insert:
    """INSERT ... SELECT, so a resource is added only while the token has
    fewer than :data:`MAX_RESOURCES_PER_TOKEN`."""
    last = table.c.last_needed if table is SCOPE_USES else table.c.last_used
    values = sa.select(
        sa.bindparam("t", type_=table.c.token_id.type),
        sa.bindparam("k", type_=table.c[column].type),
        sa.bindparam("at", type_=last.type),
    )
    if table is RESOURCE_USES:
        count = (
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c.token_id == sa.bindparam("t"))
            .scalar_subquery()
        )
        values = values.where(count < MAX_RESOURCES_PER_TOKEN)
    return table.insert().from_select(["token_id", column, last.name], values)
