"""Least privilege from observed use: which granted scopes a token never
needed, the narrowing its owner can make, and which routes each scope opens
before a token is made.

The request path records use (``usage.py``); this module answers from it.
A scope is recommended for removal when it served no request since tracking
began, so removing every recommended scope together would have refused
none. Scopes change in one way only: a rotation that narrows them
(:func:`narrowed_scopes`), never widens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from . import signals
from .errors import TokenValidationError
from .models import AccessToken
from .models import as_utc
from .models import utcnow
from .requirements import protected_routes
from .requirements import ProtectedRoute
from .scopes import ScopeCatalog
from .serialize import isoformat
from .servicebase import ServiceBase
from .usage import resource_of_key
from .usagemodels import ResourceUse
from .usagemodels import ScopeUse

#: Token ids per IN (...) list.
CHUNK = 500


@dataclass(frozen=True)
class ScopeUsage:
    """One granted scope and the last request it served (None: never)."""

    scope: str
    last_needed: datetime | None


@dataclass(frozen=True)
class ResourceUsage:
    """A resource inside the binding that a request named, by level."""

    resource: dict[str, str]
    last_used: datetime | None


@dataclass(frozen=True)
class TokenUsage:
    """What a token was observed to need since ``since``.

    .. versionadded:: 0.3
    """

    since: datetime
    scopes: tuple[ScopeUsage, ...]
    resources: tuple[ResourceUsage, ...]
    #: The granted scopes that served no request since ``since``.
    remove_scopes: tuple[str, ...]

    @property
    def used_scopes(self) -> tuple[str, ...]:
        """The granted scopes that served a request: what a narrowing
        rotation would keep."""
        return tuple(s.scope for s in self.scopes if s.last_needed is not None)

    def as_json(self) -> dict[str, Any]:
        """The JSON API's answer."""
        return {
            "since": isoformat(self.since),
            "scopes": [{"scope": s.scope, "last_needed": _iso(s.last_needed)} for s in self.scopes],
            "resources": [
                {"resource": r.resource, "last_used": _iso(r.last_used)} for r in self.resources
            ],
            "recommendation": {"remove_scopes": list(self.remove_scopes)},
        }


@dataclass(frozen=True)
class Overprivileged:
    """A token with granted scopes unused over a period."""

    token: AccessToken
    unused: tuple[str, ...]


def usage_since(token: AccessToken) -> datetime:
    """When tracking began: creation, or the arrival of tracking for older tokens."""
    since = token.usage_since or token.created_at
    assert since is not None
    return since


def narrowed_scopes(
    catalog: ScopeCatalog, token_type: str, held: Iterable[str], wanted: object
) -> tuple[str, ...]:
    """The scopes a narrowing rotation leaves, in catalog order. Each must be
    held, directly or by implication: :class:`TokenValidationError` (a
    ``ValueError``) for anything else, so a rotation never widens."""
    if isinstance(wanted, str) or not isinstance(wanted, (list, tuple)):
        raise TokenValidationError("scopes", "must be a list of scope names")
    if not all(isinstance(s, str) for s in wanted):
        raise TokenValidationError("scopes", "must be a list of scope names")
    try:
        chosen = catalog.validate(token_type, wanted)
    except ValueError as e:
        raise TokenValidationError("scopes", str(e).removeprefix("scopes: ")) from None
    granted = catalog.closure(held)
    wider = [s for s in chosen if s not in granted]
    if wider:
        raise TokenValidationError(
            "scopes",
            f"rotation can only narrow: the token does not hold {', '.join(wider)}",
        )
    return chosen


class LeastPrivilege(ServiceBase):
    """The least-privilege operations of :class:`~flask_accesstokens.TokenService`."""

    def usage(self, token_id: str) -> TokenUsage | None:
        """What the token was observed to need, and which of its scopes it
        never needed. None if there is no such token. A canary has no usage
        and no recommendation.

        .. versionadded:: 0.3
        """
        token = self.get(token_id)
        if token is None:
            return None
        since = usage_since(token)
        if token.canary:
            return TokenUsage(since, (), (), ())
        needed = dict(
            self.session.execute(
                sa.select(ScopeUse.scope, ScopeUse.last_needed).where(ScopeUse.token_id == token.id)
            ).all()
        )
        scopes = tuple(ScopeUsage(s, needed.get(s)) for s in token.scopes)
        rows = self.session.execute(
            sa.select(ResourceUse.resource, ResourceUse.last_used)
            .where(ResourceUse.token_id == token.id)
            .order_by(ResourceUse.last_used.desc(), ResourceUse.resource)
        ).all()
        resources = tuple(ResourceUsage(resource_of_key(k), at) for k, at in rows)
        remove = tuple(s.scope for s in scopes if s.last_needed is None)
        return TokenUsage(since, scopes, resources, remove)

    def unused(self, period: timedelta, now: datetime | None = None) -> list[Overprivileged]:
        """Active tokens, canaries left out, with granted scopes that served
        no request for ``period``: only tokens tracked at least that long.

        .. versionadded:: 0.3
        """
        now = utcnow() if now is None else as_utc(now)
        assert now is not None
        cutoff = now - period
        t = AccessToken
        candidates = list(
            self.session.scalars(
                sa.select(t)
                .where(t.revoked_at.is_(None), t.canary.is_(False))
                .where(sa.or_(t.expires_at.is_(None), t.expires_at > now))
                .where(sa.func.coalesce(t.usage_since, t.created_at) <= cutoff)
                .order_by(t.created_at, t.id)
            )
        )
        recent: set[tuple[str, str]] = set()
        for chunk in _chunks([token.id for token in candidates]):
            recent.update(
                self.session.execute(
                    sa.select(ScopeUse.token_id, ScopeUse.scope).where(
                        ScopeUse.token_id.in_(chunk), ScopeUse.last_needed > cutoff
                    )
                ).all()
            )
        found = []
        for token in candidates:
            unused = tuple(s for s in token.scopes if (token.id, s) not in recent)
            if unused:
                found.append(Overprivileged(token, unused))
        return found

    def notify_overprivileged(self, period: timedelta, now: datetime | None = None) -> int:
        """Send :data:`~flask_accesstokens.token_overprivileged` for each token
        :meth:`unused` finds, once per token and set of unused scopes (a
        notice row with a unique key, committed before the signal, so
        overlapping runs cannot both send). Returns how many were sent.

        .. versionadded:: 0.3
        """
        now = utcnow() if now is None else as_utc(now)
        assert now is not None
        sent = 0
        for found in self.unused(period, now):
            if self._claim_notice(found.token.id, unused_notice(found.unused), now):
                signals.token_overprivileged.send(
                    self.app, token=found.token, unused=list(found.unused)
                )
                sent += 1
        return sent


def unused_notice(unused: Sequence[str]) -> str:
    """The notice kind for one set of unused scopes: it fits the column."""
    digest = hashlib.sha256(" ".join(sorted(unused)).encode()).hexdigest()
    return f"unused:{digest[:24]}"


@dataclass(frozen=True)
class Opening:
    """A protected route a scope opens, alone or with ``also_needs``."""

    route: ProtectedRoute
    #: Further scopes the route requires that this one does not imply.
    also_needs: tuple[str, ...] = ()


def routes_by_scope(app: Flask, catalog: ScopeCatalog) -> dict[str, list[Opening]]:
    """Per scope of the catalog, the protected routes of ``app`` it opens:
    it holds (itself or by implication) a scope the route requires. For a
    route requiring several scopes, the others are named. For the create
    form and ``flask access-tokens routes``: what to choose, before a token
    exists."""
    opened: dict[str, list[Opening]] = {scope.name: [] for scope in catalog}
    for route in protected_routes(app):
        requirement = route.requirement
        for name in opened:
            held = catalog.closure((name,))
            if held.isdisjoint(requirement.scopes):
                continue
            others = () if requirement.any_of else requirement.scopes
            opened[name].append(Opening(route, tuple(s for s in others if s not in held)))
    return opened


def binding_of(route: ProtectedRoute) -> str:
    """How a route binds tokens, in words."""
    requirement = route.requirement
    if not requirement.bind:
        return "any resource"
    if requirement.container:
        return "container"
    return "resource in URL"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else isoformat(value)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
