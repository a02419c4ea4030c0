"""The management service: every operation on tokens, each in one place with
its validation, plan gating, audit and signals. This module holds the core
(create, read, revoke, rotate); leak response and housekeeping live in
``leaks.py`` and ``housekeeping.py``, on ``servicebase.py``.

It has no notion of who is calling. The JSON API and the admin pages decide
who may manage (``web.py``), the CLI and the Python API act as operator; all
of them parse their input, call this service and render what it returns.
Every write commits its own transaction through the app's session, so a
token works, or stops working, for every worker as soon as the call returns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

import sqlalchemy as sa
from flask import Flask

from . import bounded
from . import signals
from . import tokenformat
from . import words
from .addresses import parse_allow_list
from .config import MAX_ROTATION_GRACE
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .housekeeping import Housekeeping
from .leaks import LeakResponse
from .leastprivilege import LeastPrivilege
from .leastprivilege import narrowed_scopes
from .models import AccessToken
from .models import as_utc
from .models import NAME_MAX_LENGTH
from .models import TokenEvent
from .models import TokenSecret
from .models import utcnow
from .resources import Resource
from .servicebase import resource_of
from .state import SERVICE_KEY
from .tokens import NewToken
from .trustpolicy import TrustPolicies

log = logging.getLogger("flask_accesstokens")

STATES = ("active", "revoked", "expired")


@dataclass(frozen=True)
class Page:
    """One page of a search, newest first."""

    items: Sequence[AccessToken]
    total: int
    page: int
    pagelen: int

    @property
    def has_next(self) -> bool:
        return self.page * self.pagelen < self.total


class TokenService(LeakResponse, Housekeeping, TrustPolicies, LeastPrivilege):
    """Token management for one app: creating, finding, revoking and
    rotating here; leak response (``leaks.py``), housekeeping
    (``housekeeping.py``), trust policies with the OIDC exchange
    (``trustpolicy.py``) and observed use (``leastprivilege.py``) beside
    it, on the same session and audit."""

    @staticmethod
    def of(app: Flask) -> TokenService:
        return cast(TokenService, app.extensions[SERVICE_KEY])

    # -- create ------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        scopes: Iterable[str],
        resource: Mapping[str, object] | Resource | None = None,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        created_by: str | None = None,
        expires_at: datetime | None = None,
        allowed_ips: Iterable[str] | None = None,
    ) -> NewToken:
        """Validate everything, then write token, digest and audit row in one
        transaction. Raises :class:`TokenValidationError` (a ValueError naming
        the field), :class:`UnknownResource` or :class:`PlanRestriction`, and
        writes nothing, when anything is wrong.

        ``allowed_ips`` lists the networks the token may be used from (IPv4
        or IPv6, strict CIDR, or bare addresses); None means anywhere. Like
        the scopes it is fixed at creation and kept on rotation.

        ``resource`` names the bound resource, level → name from the top;
        the Bitbucket model also takes ``workspace``, ``project`` and
        ``repository``.

        .. versionchanged:: 0.2
            ``allowed_ips``, ``resource``.
        """
        name = check_name(name)
        resource = self.resolve(resource, workspace, project, repository)
        if isinstance(scopes, str):
            raise TokenValidationError("scopes", "must be a list of scope names, not a string")
        try:
            granted = self.catalog.validate(resource.type, scopes)
        except ValueError as e:
            raise TokenValidationError("scopes", str(e).removeprefix("scopes: ")) from None
        networks = None
        if allowed_ips is not None:
            try:
                networks = parse_allow_list(allowed_ips)
            except (TypeError, ValueError) as e:
                raise TokenValidationError("allowed_ips", str(e)) from None
        now = utcnow()
        expires_at = self.check_expiry(expires_at, now)
        self.check_plan(resource)
        self.check_exists(resource)
        return self._insert(
            resource,
            now,
            name=name,
            scopes=granted,
            created_by=created_by,
            expires_at=expires_at,
            allowed_ips=None if networks is None else " ".join(networks),
        )

    def create_on(self, resource: Resource, *, canary: bool = False, **fields: Any) -> NewToken:
        """:meth:`create` (or :meth:`create_canary`) for a resource a surface
        has already parsed from its URL."""
        if canary:
            return self.create_canary(resource=resource, **fields)
        return self.create(resource=resource, **fields)

    def create_canary(
        self,
        *,
        name: str,
        resource: Mapping[str, object] | Resource | None = None,
        workspace: object = None,
        project: object = None,
        repository: object = None,
        created_by: str | None = None,
    ) -> NewToken:
        """A decoy token: a real-looking secret that grants nothing and
        raises :data:`~flask_accesstokens.canary_tripped` when used. It has no
        scopes and no expiry (``ACCESSTOKENS_MAX_LIFETIME`` bounds what a
        token can do, and a canary can do nothing); the resource, plan and
        existence checks are those of :meth:`create`, so it looks like one.

        .. versionadded:: 0.2
        """
        name = check_name(name)
        resource = self.resolve(resource, workspace, project, repository)
        self.check_plan(resource)
        self.check_exists(resource)
        return self._insert(
            resource, utcnow(), name=name, scopes=(), created_by=created_by, canary=True
        )

    def check_expiry(
        self, expires_at: datetime | None, now: datetime | None = None
    ) -> datetime | None:
        """Expiry is optional unless ``ACCESSTOKENS_MAX_LIFETIME`` bounds it."""
        now = now or utcnow()
        limit = self.settings.max_lifetime
        if expires_at is None:
            if limit is not None:
                raise TokenValidationError(
                    "expires_at", f"required: tokens may live at most {_days(limit)}"
                )
            return None
        if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            raise TokenValidationError("expires_at", "must be a timezone-aware datetime")
        if expires_at <= now:
            raise TokenValidationError("expires_at", "must be in the future")
        if limit is not None and expires_at > now + limit:
            raise TokenValidationError(
                "expires_at", f"must be within {_days(limit)} of now (ACCESSTOKENS_MAX_LIFETIME)"
            )
        return as_utc(expires_at)

    # -- plan gating and existence ---------------------------------------------------

    def allowed_token_types(self, top: str) -> tuple[str, ...]:
        """The token types (levels) the plan of ``top``, a resource of the
        top level, includes."""
        levels = self.model.names
        loader = self.state.callbacks.allowed_types_loader
        if loader is None:
            return levels
        allowed = set(self.state.call(loader, top))
        return tuple(t for t in levels if t in allowed)

    def types_for(self, resource: Resource) -> tuple[str, ...]:
        """The token types the plan of ``resource``'s top level includes."""
        return self.allowed_token_types(resource.values[self.model.levels[0].name])

    def plan_refusal(self, resource: Resource) -> str | None:
        """Why ``resource`` cannot get new tokens on its top level's plan, or
        None when it can: the one plan-gating decision, for every surface."""
        top_level = self.model.levels[0]
        top = resource.values[top_level.name]
        allowed = self.allowed_token_types(top)
        if resource.type in allowed:
            return None
        overrides = self.settings.messages
        message = words.message(
            "plan",
            overrides,
            Label=self.model.level(resource.type).label,
            top=top_level.label.lower(),
            name=top,
        )
        if allowed:
            message += words.message("plan_allows", overrides, types=" and ".join(allowed))
        return message

    def check_plan(self, resource: Resource) -> None:
        refusal = self.plan_refusal(resource)
        if refusal is not None:
            top = resource.values[self.model.levels[0].name]
            raise PlanRestriction(refusal, self.allowed_token_types(top))

    def check_exists(self, resource: Resource) -> None:
        """Refuse tokens for resources the app says do not exist: such a token
        would work nowhere. Without a ``resource_exists`` callback, anything goes."""
        exists = self.state.callbacks.resource_exists
        if exists is not None and not self.state.call(exists, resource):
            label = self.model.level(resource.type).label.lower()
            text = words.message(
                "no_such_resource", self.settings.messages, label=label, name=resource
            )
            raise UnknownResource(resource.type, text)

    # -- read ------------------------------------------------------------------------

    def get_on(self, resource: Resource, token_id: str) -> AccessToken | None:
        """The token, if it is bound to exactly ``resource``: surfaces answer
        another resource's token like one that does not exist."""
        token = self.get(token_id)
        if token is None or resource_of(token) != resource:
            return None
        return token

    def search(
        self,
        resource: Resource,
        *,
        exact: bool = True,
        token_type: str | None = None,
        state: str | None = None,
        q: str | None = None,
        never_used: bool = False,
        last_used_before: datetime | None = None,
        page: int = 1,
        pagelen: int | None = None,
    ) -> Page:
        """Tokens of one resource (``exact``), or of it and everything inside
        it by its name (a subtree: one index range), newest first, filtered
        and paginated."""
        t = AccessToken
        query = sa.select(t).where(
            in_subtree(resource) if not exact else t.resource_key == resource.key
        )
        if exact:
            query = query.where(t.type == resource.type)
        if token_type is not None:
            levels = self.model.names
            if token_type not in levels:
                raise TokenValidationError("type", f"must be one of {', '.join(levels)}")
            query = query.where(t.type == token_type)
        now = utcnow()
        if state == "active":
            query = query.where(
                t.revoked_at.is_(None), sa.or_(t.expires_at.is_(None), t.expires_at > now)
            )
        elif state == "revoked":
            query = query.where(t.revoked_at.is_not(None))
        elif state == "expired":
            query = query.where(t.revoked_at.is_(None), t.expires_at <= now)
        elif state is not None:
            raise TokenValidationError("state", f"must be one of {', '.join(STATES)}")
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(t.name.ilike(f"%{escaped}%", escape="\\"))
        if never_used:
            query = query.where(t.last_used_at.is_(None))
        if last_used_before is not None:
            query = query.where(sa.or_(t.last_used_at.is_(None), t.last_used_at < last_used_before))
        total = self.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
        query = query.order_by(t.created_at.desc(), t.id.desc())
        if pagelen is not None:
            query = query.limit(pagelen).offset((page - 1) * pagelen)
        items = self.session.scalars(query).all()
        return Page(items, total or 0, page, pagelen or len(items))

    def events(self, token_id: str | None = None, limit: int = 100) -> Sequence[TokenEvent]:
        """The audit log, newest first."""
        query = sa.select(TokenEvent).order_by(TokenEvent.id.desc()).limit(limit)
        if token_id is not None:
            query = query.where(TokenEvent.token_id == token_id)
        return self.session.scalars(query).all()

    # -- revoke --------------------------------------------------------------------------

    def revoke(self, token_id: str, revoked_by: str | None = None) -> AccessToken | None:
        """Revoke now, for every worker. Idempotent: revoking twice keeps the
        first time and actor. None if there is no such token."""
        token = self.get(token_id)
        if token is None or token.revoked_at is not None:
            return token
        self._revoke(token, revoked_by, "revoked")
        self._commit()
        signals.token_revoked.send(self.app, token=token, actor=revoked_by)
        return token

    def revoke_resource(self, resource: Resource, revoked_by: str | None = None) -> int:
        """A resource is gone: so are the tokens bound to it and to everything
        its name holds (deleting a workspace takes every token in it; a level
        whose parent is loaded is not named inside it). Returns how many
        were revoked."""
        t = AccessToken
        query = sa.select(t).where(in_subtree(resource), t.revoked_at.is_(None))
        revoked = list(self.session.scalars(query))
        for token in revoked:
            self._revoke(token, revoked_by, "resource deleted")
        self._commit()
        for token in revoked:
            signals.token_revoked.send(self.app, token=token, actor=revoked_by)
        return len(revoked)

    # -- rotate ------------------------------------------------------------------------------

    def rotate(
        self,
        token_id: str,
        rotated_by: str | None = None,
        grace: timedelta | None = None,
        *,
        scopes: Iterable[str] | None = None,
    ) -> NewToken | None:
        """A new secret for the same token; the old one keeps working for the
        grace window, then counts as reused if presented. None if there is no
        such token; :class:`TokenConflict` if it is not active, or if another
        rotation committed since it was read (compare-and-set on the
        generation: overlapping rotations cannot both succeed).

        ``scopes`` narrows the token in the same transaction: each must be
        held, directly or by implication (else :class:`TokenValidationError`),
        and from the commit on both secrets grant only those.

        .. versionchanged:: 0.3
            ``scopes``.
        """
        grace = self.settings.rotation_grace if grace is None else grace
        if not isinstance(grace, timedelta) or not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
            raise TokenValidationError("grace", "must be between 0 and 30 minutes")
        token = self.get(token_id)
        if token is None:
            return None
        if not token.is_active:
            raise TokenConflict(
                f"A {token.state} access token cannot be rotated; create a new one."
            )
        if token.canary:
            # A second secret would be a second canary planted nowhere.
            raise TokenConflict("A canary token cannot be rotated; create a new one.")
        if token.policy_id is not None:
            # Minted for one CI job: it ends with the job, never renewed.
            raise TokenConflict("A token minted by an OIDC exchange cannot be rotated.")
        self.check_plan(resource_of(token))
        before = tuple(token.scopes)
        narrowed = (
            before if scopes is None else narrowed_scopes(self.catalog, token.type, before, scopes)
        )
        generation = token.generation
        now = utcnow()
        t = AccessToken
        swapped = self.session.execute(  # type: ignore[attr-defined]
            sa.update(t)
            .where(t.id == token.id, t.generation == generation, t.revoked_at.is_(None))
            .values(generation=generation + 1, rotated_at=now, scopes=narrowed)
            .execution_options(synchronize_session=False)
        ).rowcount
        if swapped != 1:
            self.session.rollback()
            raise TokenConflict(
                "This access token was rotated or revoked at the same time; reload and try again."
            )
        self.session.execute(
            sa.update(TokenSecret)
            .where(TokenSecret.token_id == token.id, TokenSecret.valid_until.is_(None))
            .values(valid_until=now + grace)
            .execution_options(synchronize_session=False)
        )
        secret = self._add_secret(token, now)
        detail = f"grace={int(grace.total_seconds())}s"
        if narrowed != before:
            detail += f"; scopes: {' '.join(before)} -> {' '.join(narrowed)}"
        self._audit("rotated", token, actor=rotated_by, detail=detail)
        self._commit()
        signals.token_rotated.send(self.app, token=token, actor=rotated_by, grace_until=now + grace)
        return NewToken(secret, self._detached(token))

    # -- internals ------------------------------------------------------------------------------

    def _insert(
        self, resource: Resource, now: datetime, audit_detail: str | None = None, **fields: Any
    ) -> NewToken:
        """Write a validated token, its digest and its audit row in one
        transaction, then announce it: the end of every create path (an
        OIDC exchange passes the matched claims as ``audit_detail``)."""
        fields["created_by"] = bounded.actor(fields.get("created_by"))
        token = AccessToken(
            id=tokenformat.new_id(),
            type=resource.type,
            resource_key=resource.key,
            created_at=now,
            generation=0,
            new_clients_count=0,
            **fields,
        )
        secret = self._add_secret(token, now)
        detail = "canary" if token.canary else audit_detail
        self._audit("created", token, actor=token.created_by, detail=detail)
        self._commit()
        signals.token_created.send(self.app, token=token, actor=token.created_by)
        return NewToken(secret, self._detached(token))

    def _add_secret(self, token: AccessToken, now: datetime) -> str:
        secret = tokenformat.generate(self.settings.token_prefix)
        token.hint = tokenformat.hint(secret)
        self.session.add(token)
        self.session.add(
            TokenSecret(
                digest=self.state.digester.digest(secret), token_id=token.id, created_at=now
            )
        )
        return secret


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TokenValidationError("name", "required")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        raise TokenValidationError("name", f"at most {NAME_MAX_LENGTH} characters")
    if not name.isprintable():
        raise TokenValidationError("name", "must not contain control characters")
    return name


def in_subtree(resource: Resource) -> sa.ColumnElement[bool]:
    """Tokens bound to ``resource`` or to anything its key holds: the key
    itself, or the keys just after ``key/`` and before ``key0`` (``0``
    follows ``/`` in byte order, which the column's collation keeps)."""
    key = AccessToken.resource_key
    return sa.or_(
        key == resource.key,
        sa.and_(key > resource.key + "/", key < resource.key + "0"),
    )


def _days(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return f"{int(delta.total_seconds())} seconds"
    return f"{delta.days} days"
