"""The management service: every operation on tokens, each in one place with
its validation, plan gating, audit and signals.

It has no notion of who is calling. The JSON API and the admin pages decide
who may manage (``web.py``), the CLI and the Python API act as operator; all
of them parse their input, call this service and render what it returns.
Every write commits its own transaction through the app's session, so a
token works, or stops working, for every worker as soon as the call returns.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import signals
from . import tokenformat
from .addresses import parse_allow_list
from .config import MAX_ROTATION_GRACE
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .models import AccessToken
from .models import as_utc
from .models import LEAK_URL_MAX_LENGTH
from .models import NAME_MAX_LENGTH
from .models import TokenEvent
from .models import TokenNotice
from .models import TokenSecret
from .models import utcnow
from .resources import Resource
from .scopes import TOKEN_TYPES
from .serialize import parse_datetime
from .state import AppState
from .state import SERVICE_KEY
from .tokens import NewToken

log = logging.getLogger("flask_accesstokens")

STATES = ("active", "revoked", "expired")
#: Longest resource name, as the columns hold it.
RESOURCE_NAME_MAX_LENGTH = 255


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


@dataclass
class LeakOutcome:
    """What one leak report did: whether this app issued each reported
    token (in order), and the signals still to send (:meth:`TokenService.announce`)."""

    provider: str
    client: str | None
    issued: list[bool]
    #: (token id, reported URL) of each token this report revoked.
    leaked: list[tuple[str, str | None]]
    #: Ids of the armed canaries it named.
    tripped: list[str]


class TokenService:
    """Token management for one app."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.app = state.app
        self.settings = state.settings
        self.catalog = state.catalog

    @staticmethod
    def of(app: Flask) -> TokenService:
        return cast(TokenService, app.extensions[SERVICE_KEY])

    @property
    def session(self) -> Session:
        return self.state.db.session  # type: ignore[return-value]

    # -- create ------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        workspace: str,
        scopes: Iterable[str],
        project: str | None = None,
        repository: str | None = None,
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

        .. versionchanged:: 0.2
            ``allowed_ips``.
        """
        name = check_name(name)
        resource = check_resource(workspace, project, repository)
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
        token = AccessToken(
            id=tokenformat.new_id(),
            name=name,
            type=resource.type,
            workspace=resource.workspace,
            project=resource.project,
            repository=resource.repository,
            scopes=granted,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
            generation=0,
            allowed_ips=None if networks is None else " ".join(networks),
            new_clients_count=0,
        )
        secret = self._add_secret(token, now)
        self._audit("created", token, actor=created_by)
        self._commit()
        signals.token_created.send(self.app, token=token, actor=created_by)
        return NewToken(secret, self._detached(token))

    def create_on(self, resource: Resource, *, canary: bool = False, **fields: Any) -> NewToken:
        """:meth:`create` (or :meth:`create_canary`) for a resource a surface
        has already parsed from its URL."""
        names: dict[str, Any] = {
            "workspace": resource.workspace,
            "project": resource.project if resource.type == "project" else None,
            "repository": resource.repository if resource.type == "repository" else None,
        }
        if canary:
            return self.create_canary(**names, **fields)
        return self.create(**names, **fields)

    def create_canary(
        self,
        *,
        name: str,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
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
        resource = check_resource(workspace, project, repository)
        self.check_plan(resource)
        self.check_exists(resource)
        now = utcnow()
        token = AccessToken(
            id=tokenformat.new_id(),
            name=name,
            type=resource.type,
            workspace=resource.workspace,
            project=resource.project,
            repository=resource.repository,
            scopes=(),
            created_at=now,
            created_by=created_by,
            expires_at=None,
            generation=0,
            canary=True,
        )
        secret = self._add_secret(token, now)
        self._audit("created", token, actor=created_by, detail="canary")
        self._commit()
        signals.token_created.send(self.app, token=token, actor=created_by)
        return NewToken(secret, self._detached(token))

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

    def allowed_token_types(self, workspace: str) -> tuple[str, ...]:
        """The token types the workspace's plan includes."""
        loader = self.state.callbacks.allowed_types_loader
        if loader is None:
            return TOKEN_TYPES
        allowed = set(self.state.call(loader, workspace))
        return tuple(t for t in TOKEN_TYPES if t in allowed)

    def plan_refusal(self, resource: Resource) -> str | None:
        """Why ``resource`` cannot get new tokens on its workspace's plan, or
        None when it can: the one plan-gating decision, for every surface."""
        allowed = self.allowed_token_types(resource.workspace)
        if resource.type in allowed:
            return None
        message = (
            f"{resource.type.capitalize()} access tokens are not available on the plan of"
            f" workspace {resource.workspace}."
        )
        if allowed:
            message += f" It can use {' and '.join(allowed)} access tokens."
        return message

    def check_plan(self, resource: Resource) -> None:
        refusal = self.plan_refusal(resource)
        if refusal is not None:
            raise PlanRestriction(refusal, self.allowed_token_types(resource.workspace))

    def check_exists(self, resource: Resource) -> None:
        """Refuse tokens for resources the app says do not exist: such a token
        would work nowhere. Without a ``resource_exists`` callback, anything goes."""
        exists = self.state.callbacks.resource_exists
        if exists is not None and not self.state.call(exists, resource):
            raise UnknownResource(resource.type, f"There is no {resource.type} {resource}.")

    # -- read ------------------------------------------------------------------------

    def get(self, token_id: str) -> AccessToken | None:
        if not isinstance(token_id, str) or not tokenformat.is_id(token_id):
            return None
        return self.session.get(AccessToken, token_id)

    def get_on(self, resource: Resource, token_id: str) -> AccessToken | None:
        """The token, if it is bound to exactly ``resource``: surfaces answer
        another resource's token like one that does not exist."""
        token = self.get(token_id)
        if token is None or resource_of(token) != resource:
            return None
        return token

    def search(
        self,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
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
        """Tokens of one resource (``exact``), or of everything in a workspace,
        newest first, filtered and paginated."""
        t = AccessToken
        query = sa.select(t).where(t.workspace == workspace)
        if exact:
            query = query.where(
                t.project.is_(None) if project is None else t.project == project,
                t.repository.is_(None) if repository is None else t.repository == repository,
            )
        if token_type is not None:
            if token_type not in TOKEN_TYPES:
                raise TokenValidationError("type", f"must be one of {', '.join(TOKEN_TYPES)}")
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

    def revoke_resource(
        self,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        revoked_by: str | None = None,
    ) -> int:
        """A resource is gone: so are the tokens bound to it. Deleting a
        workspace takes every token in it. Returns how many were revoked."""
        resource = check_resource(workspace, project, repository)
        t = AccessToken
        query = sa.select(t).where(t.workspace == workspace, t.revoked_at.is_(None))
        if resource.type == "repository":
            query = query.where(t.type == "repository", t.repository == repository)
        elif resource.type == "project":
            query = query.where(t.type == "project", t.project == project)
        revoked = list(self.session.scalars(query))
        for token in revoked:
            self._revoke(token, revoked_by, "resource deleted")
        self._commit()
        for token in revoked:
            signals.token_revoked.send(self.app, token=token, actor=revoked_by)
        return len(revoked)

    # -- rotate ------------------------------------------------------------------------------

    def rotate(
        self, token_id: str, rotated_by: str | None = None, grace: timedelta | None = None
    ) -> NewToken | None:
        """A new secret for the same token; the old one keeps working for the
        grace window, then counts as reused if presented. None if there is no
        such token; :class:`TokenConflict` if it is not active, or if another
        rotation committed since it was read (compare-and-set on the
        generation: overlapping rotations cannot both succeed)."""
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
        self.check_plan(resource_of(token))
        generation = token.generation
        now = utcnow()
        t = AccessToken
        swapped = self.session.execute(  # type: ignore[attr-defined]
            sa.update(t)
            .where(t.id == token.id, t.generation == generation, t.revoked_at.is_(None))
            .values(generation=generation + 1, rotated_at=now)
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
        self._audit(
            "rotated", token, actor=rotated_by, detail=f"grace={int(grace.total_seconds())}s"
        )
        self._commit()
        signals.token_rotated.send(self.app, token=token, actor=rotated_by, grace_until=now + grace)
        return NewToken(secret, self._detached(token))

    # -- leaks and canaries ----------------------------------------------------------------------

    def trip_canary(self, token_id: str, client: str | None, uses: int = 1) -> AccessToken | None:
        """A canary was presented: send :data:`~flask_accesstokens.canary_tripped`
        and, unless ``uses`` is 0, write one audit event and one WARNING line
        for ``uses`` uses (the request path folds a flood of uses into one
        per interval). The request path calls it after its answer is sent.
        None (and no alarm) unless ``token_id`` is an armed canary: a revoked
        one is disarmed."""
        token = self.get(token_id)
        if token is None or not token.canary or token.revoked_at is not None:
            return None
        if uses:
            detail = "presented" if uses == 1 else f"presented {uses} times"
            self._audit("canary_tripped", token, None, detail, client, count=uses)
            self._commit()
            self._alarm(token, client, uses)
        else:
            signals.canary_tripped.send(self.app, token=token, client=client)
        return token

    def report_leaks(
        self,
        provider: str,
        reported: Sequence[tuple[str, str | None]],
        *,
        client: str | None,
        revoked_by: str,
    ) -> LeakOutcome:
        """Revoke every token of this app among ``reported`` (token string,
        URL where it was found), at once and in one transaction; a canary
        stays armed and is audited as tripped by ``client``. Returns whether
        each was issued here (live, revoked, expired or rotated out), for the
        answer, and the signals to send with :meth:`announce`.

        Garbage is cheap: the format and checksum are checked first, then one
        lookup per candidate. Reporting a token twice changes nothing more.
        """
        outcome = LeakOutcome(provider, client, [], [], [])
        revoked: set[str] = set()
        for secret, url in reported:
            token = self.find_by_secret(secret)
            outcome.issued.append(token is not None)
            if token is None or token.id in revoked or token.id in outcome.tripped:
                continue
            if token.canary:
                if token.revoked_at is None:
                    detail = f"reported by {provider}"
                    self._audit("canary_tripped", token, actor=None, detail=detail, client=client)
                    outcome.tripped.append(token.id)
                continue
            if token.revoked_at is not None:
                continue  # revoked before; the first revocation's record stays
            url = None if url is None else url[:LEAK_URL_MAX_LENGTH]
            token.leak_provider = provider
            token.leak_url = url
            self._revoke(token, revoked_by, f"leaked: {provider}")
            revoked.add(token.id)
            outcome.leaked.append((token.id, url))
        # Committed whether or not anything changed: the work done does not
        # depend on which tokens existed more than it must.
        self._commit()
        return outcome

    def announce(self, outcome: LeakOutcome) -> None:
        """Send the signals of a :meth:`report_leaks`, in an app context.
        Apart from it so public revocation can send them after its answer."""
        for token_id, url in outcome.leaked:
            token = self.get(token_id)
            if token is not None:
                log.warning(
                    "Access token %s was reported leaked by %s and revoked",
                    token.id,
                    outcome.provider,
                )
                signals.token_leaked.send(self.app, token=token, provider=outcome.provider, url=url)
        for token_id in outcome.tripped:
            token = self.get(token_id)
            if token is not None:
                self._alarm(token, outcome.client)

    def find_by_secret(self, secret: object) -> AccessToken | None:
        """The token a secret (current or rotated out) belongs to, or None.
        Malformed strings cost no query; the digest is compared in constant
        time."""
        if not isinstance(secret, str) or not tokenformat.is_well_formed(
            secret, self.settings.token_prefix
        ):
            return None
        candidates = self.state.digester.candidates(secret)
        found = self.session.execute(
            sa.select(AccessToken, TokenSecret.digest)
            .join(TokenSecret, TokenSecret.token_id == AccessToken.id)
            .where(TokenSecret.digest.in_(candidates))
            .limit(1)
        ).first()
        if found is None or not any(hmac.compare_digest(found[1], c) for c in candidates):
            return None
        token: AccessToken = found[0]
        return token

    def _alarm(self, token: AccessToken, client: str | None, uses: int = 1) -> None:
        log.warning(
            "Canary access token %s (%r) on %s was used by %s%s",
            token.id,
            token.name,
            resource_of(token),
            client,
            "" if uses == 1 else f" ({uses} uses since the last alarm)",
        )
        signals.canary_tripped.send(self.app, token=token, client=client)

    # -- prune ----------------------------------------------------------------------------------

    def prune(
        self,
        older_than: timedelta,
        *,
        dry_run: bool = False,
        clients_older_than: timedelta | None = None,
    ) -> list[AccessToken]:
        """Delete tokens revoked or expired more than ``older_than`` ago. The
        audit log keeps their history. Unless ``dry_run``, also forget client
        addresses (recent clients, last-used address) seen longer ago than
        ``clients_older_than`` (default ``ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE``):
        they are personal data.

        .. versionchanged:: 0.2
            Forgets old client addresses too.
        """
        if not dry_run:
            self.prune_clients(clients_older_than)
        cutoff = utcnow() - older_than
        t = AccessToken
        query = sa.select(t).where(
            sa.or_(
                t.revoked_at < cutoff,
                sa.and_(t.revoked_at.is_(None), t.expires_at < cutoff),
            )
        )
        doomed = list(self.session.scalars(query))
        if dry_run or not doomed:
            return doomed
        ids = [token.id for token in doomed]
        for token in doomed:
            self._audit("pruned", token, actor="prune")
            # Detached with what was loaded, so callers can still describe them.
            self.session.expunge(token)
        self.session.execute(sa.delete(TokenSecret).where(TokenSecret.token_id.in_(ids)))
        self.session.execute(sa.delete(TokenNotice).where(TokenNotice.token_id.in_(ids)))
        self.session.execute(sa.delete(AccessToken).where(AccessToken.id.in_(ids)))
        self._commit()
        return doomed

    def prune_clients(self, older_than: timedelta | None = None) -> int:
        """Forget client addresses last seen more than ``older_than`` ago
        (default ``ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE``). Returns how many
        addresses were dropped.

        .. versionadded:: 0.2
        """
        age = self.settings.recent_clients_max_age if older_than is None else older_than
        cutoff = utcnow() - age
        t = AccessToken
        dropped = 0
        query = sa.select(t).where(
            sa.or_(
                t.recent_ips.is_not(None),
                sa.and_(t.last_used_ip.is_not(None), t.last_used_at < cutoff),
            )
        )
        for token in self.session.scalars(query):
            if token.last_used_ip is not None and (
                token.last_used_at is None or token.last_used_at < cutoff
            ):
                token.last_used_ip = None
                dropped += 1
            clients = token.recent_clients
            kept = [c for c in clients if _seen_since(c, cutoff)]
            if len(kept) != len(clients) or (token.recent_ips and not clients):
                dropped += len(clients) - len(kept)
                token.recent_clients_json = json.dumps(kept) if kept else None
                token.recent_ips = " ".join(c["ip"] for c in kept) or None
        self._commit()
        return dropped

    # -- expiry warnings ----------------------------------------------------------------

    def notify_expiring(self, now: datetime | None = None) -> int:
        """Send ``token_expiring`` and ``token_expired`` for tokens with an
        expiry, neither revoked nor canaries: each threshold of
        ``ACCESSTOKENS_EXPIRY_WARNINGS`` at most once (only the smallest when
        several are crossed at once), ``token_expired`` once after expiry
        (and only that for a token already expired when first seen). Each
        notice is a row with a unique (token, kind) key, inserted and
        committed before its signal: overlapping runs (two cron hosts) cannot
        both send it. Returns how many signals were sent.

        .. versionadded:: 0.2
        """
        now = utcnow() if now is None else as_utc(now)
        assert now is not None
        thresholds = self.settings.expiry_warnings
        horizon = now + timedelta(days=max(thresholds, default=0))
        t = AccessToken
        query = (
            sa.select(t)
            .where(t.expires_at.is_not(None), t.expires_at <= horizon, t.revoked_at.is_(None))
            .where(t.canary.is_(False))  # a canary's alarm is its only message
            .order_by(t.expires_at, t.id)
        )
        candidates = list(self.session.scalars(query))
        sent = self._sent_notices([token.id for token in candidates])
        count = 0
        for token in candidates:
            expires_at = token.expires_at
            assert expires_at is not None
            if expires_at <= now:
                kind, days = "expired", None
            else:
                crossed = [d for d in thresholds if expires_at - now <= timedelta(days=d)]
                if not crossed:
                    continue
                days = min(crossed)
                kind = f"expiring:{days}"
            if (token.id, kind) in sent or not self._claim_notice(token.id, kind, now):
                continue
            if days is None:
                signals.token_expired.send(self.app, token=token)
            else:
                signals.token_expiring.send(self.app, token=token, days_left=days)
            count += 1
        return count

    def _sent_notices(self, token_ids: list[str]) -> set[tuple[str, str]]:
        sent: set[tuple[str, str]] = set()
        for start in range(0, len(token_ids), 500):
            chunk = token_ids[start : start + 500]
            rows = self.session.execute(
                sa.select(TokenNotice.token_id, TokenNotice.kind).where(
                    TokenNotice.token_id.in_(chunk)
                )
            )
            sent.update((token_id, kind) for token_id, kind in rows)
        return sent

    def _claim_notice(self, token_id: str, kind: str, now: datetime) -> bool:
        """Insert the notice; False if another run already did."""
        try:
            self.session.execute(
                sa.insert(TokenNotice).values(token_id=token_id, kind=kind, sent_at=now)
            )
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            return False
        except BaseException:
            self.session.rollback()
            raise
        return True

    # -- internals ------------------------------------------------------------------------------

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

    def _audit(
        self,
        action: str,
        token: AccessToken,
        actor: str | None,
        detail: str | None = None,
        client: str | None = None,
        count: int = 1,
    ) -> None:
        self.session.add(
            TokenEvent(
                at=utcnow(),
                action=action,
                token_id=token.id,
                actor=actor,
                client=client,
                count=count,
                workspace=token.workspace,
                project=token.project,
                repository=token.repository,
                detail=detail,
            )
        )

    def _revoke(self, token: AccessToken, actor: str | None, why: str) -> None:
        token.revoked_at = utcnow()
        token.revoked_by = actor
        self._audit("revoked", token, actor=actor, detail=why)

    def _detached(self, token: AccessToken) -> AccessToken:
        """The record as committed, readable after later commits and outside
        the app context: a value to show, not a handle to change."""
        self.session.refresh(token)
        self.session.expunge(token)
        return token

    def _commit(self) -> None:
        try:
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise


def resource_of(token: AccessToken) -> Resource:
    return Resource(token.type, token.workspace, token.project, token.repository)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TokenValidationError("name", "required")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        raise TokenValidationError("name", f"at most {NAME_MAX_LENGTH} characters")
    if not name.isprintable():
        raise TokenValidationError("name", "must not contain control characters")
    return name


def check_resource(workspace: object, project: object, repository: object) -> Resource:
    """The resource these names denote. A name is taken whole: no control
    characters, no whitespace (a trailing newline must not slip through), no
    ``/``; "" must not quietly widen a repository token to the workspace."""
    for field, value in (
        ("workspace", workspace),
        ("project", project),
        ("repository", repository),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > RESOURCE_NAME_MAX_LENGTH:
            raise TokenValidationError(
                field, f"must be a string of at most {RESOURCE_NAME_MAX_LENGTH} characters"
            )
        if not value:
            raise TokenValidationError(field, "must not be empty")
        if not value.isprintable() or any(c.isspace() or c == "/" for c in value):
            raise TokenValidationError(
                field, "must not contain whitespace, '/' or control characters"
            )
    if workspace is None:
        raise TokenValidationError("workspace", "required")
    try:
        return Resource.of(workspace, project, repository)  # type: ignore[arg-type]
    except ValueError as e:
        field, _, message = str(e).partition(": ")
        raise TokenValidationError(field, message) from None


def _seen_since(client: object, cutoff: datetime) -> bool:
    if not isinstance(client, dict):
        return False
    try:
        return parse_datetime(client.get("last_seen")) >= cutoff
    except ValueError:
        return False


def _days(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return f"{int(delta.total_seconds())} seconds"
    return f"{delta.days} days"
