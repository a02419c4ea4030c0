"""Token persistence: the only module, with its helper ``lookup.py``, that
talks to the database.

Two paths with different needs:

- Management (create, list, revoke, rotate) goes through the app's
  Flask-SQLAlchemy session and commits, so a token works or stops working for
  every worker as soon as the call returns.
- Authentication runs on every protected request: one indexed lookup by
  digest (see ``lookup.py``), then checks on the row in Python. Its writes
  (last use, audit of failures) are short transactions of their own, apart
  from the app's session.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from . import tokenformat
from .errors import InvalidToken
from .lookup import Lookup
from .models import AccessToken
from .models import as_utc
from .models import EVENTS
from .models import NAME_MAX_LENGTH
from .models import TokenEvent
from .models import TOKENS
from .models import TokenSecret
from .models import utcnow
from .resources import Resource
from .scopes import ScopeCatalog
from .tokens import AuthenticatedToken
from .tokens import NewToken

log = logging.getLogger("flask_accesstokens")


#: How long a best-effort write (last use, audit of failures) waits for
#: SQLite's write lock before it gives up.
SQLITE_BEST_EFFORT_WAIT_MS = 100
#: Bitbucket's ceiling for the rotation grace window.
MAX_ROTATION_GRACE = timedelta(minutes=30)
STATES = ("active", "revoked", "expired")


class TokenValidationError(ValueError):
    """Bad input to create or rotate. ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Page:
    items: Sequence[AccessToken]
    total: int
    page: int
    pagelen: int


@dataclass
class StoreConfig:
    prefix: str
    last_used_resolution: timedelta
    rotation_grace: timedelta
    revoke_on_reuse: bool
    max_lifetime: timedelta | None
    failure_audit_interval: float
    statement_timeout_ms: int | None


class TokenStore:
    """Token persistence for one app."""

    def __init__(
        self,
        db: SQLAlchemy,
        engine: Callable[[], Engine],
        catalog: ScopeCatalog,
        digester: tokenformat.Digester,
        config: StoreConfig,
        signal: Callable[..., None],
    ) -> None:
        self.db = db
        self._engine = engine
        self.catalog = catalog
        self.digester = digester
        self.config = config
        self._signal = signal
        self._lookup = Lookup(
            engine, config.statement_timeout_ms, lambda: self.session.connection()
        )
        self._resolution = config.last_used_resolution
        self._failures = _FailureCounter(config.failure_audit_interval)

    @property
    def session(self) -> Session:
        return self.db.session  # type: ignore[return-value]

    def dispose(self) -> None:
        """Close the request path's idle connections (tests, shutdown)."""
        self._lookup.dispose()

    # -- management ---------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        scopes: Iterable[str],
        created_by: str | None = None,
        expires_at: datetime | None = None,
    ) -> NewToken:
        """Validate everything, then write token, digest and audit row in one
        transaction."""
        name = _check_name(name)
        resource = _check_resource(workspace, project, repository)
        if isinstance(scopes, str):
            raise TokenValidationError("scopes", "must be a list of scope names, not a string")
        try:
            granted = self.catalog.validate(resource.type, scopes)
        except ValueError as e:
            raise TokenValidationError("scopes", str(e).removeprefix("scopes: ")) from None
        now = utcnow()
        expires_at = self.check_expiry(expires_at, now)
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
        )
        secret = self._add_secret(token, now)
        self._add_event("created", token, actor=created_by)
        self._commit()
        self._signal("token_created", token=token, actor=created_by)
        return NewToken(secret, self._detached(token))

    def check_expiry(self, expires_at: datetime | None, now: datetime) -> datetime | None:
        """Expiry is optional unless ``ACCESSTOKENS_MAX_LIFETIME`` bounds it."""
        limit = self.config.max_lifetime
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

    def get(self, token_id: str, *, for_update: bool = False) -> AccessToken | None:
        if not isinstance(token_id, str) or not tokenformat.is_id(token_id):
            return None
        return self.session.get(AccessToken, token_id, with_for_update=for_update or None)

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
        if token_type:
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

    def revoke(self, token_id: str, revoked_by: str | None = None) -> AccessToken | None:
        """Idempotent: revoking twice keeps the first time and actor."""
        token = self.get(token_id)
        if token is None or token.revoked_at is not None:
            return token
        self._revoke(token, revoked_by, "revoked")
        self._commit()
        self._signal("token_revoked", token=token, actor=revoked_by)
        return token

    def revoke_resource(
        self,
        workspace: str,
        project: str | None = None,
        repository: str | None = None,
        revoked_by: str | None = None,
    ) -> int:
        """A resource is gone: so are the tokens bound to it. Deleting a
        workspace takes every token in it."""
        resource = _check_resource(workspace, project, repository)
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
            self._signal("token_revoked", token=token, actor=revoked_by)
        return len(revoked)

    def rotate(
        self, token_id: str, rotated_by: str | None = None, grace: timedelta | None = None
    ) -> NewToken | None:
        """A new secret for the same token. The old one keeps working for the
        grace window, then counts as reused if presented."""
        # Locked (where the database can) so two rotations cannot both keep
        # a secret alive.
        token = self.get(token_id, for_update=True)
        if token is None:
            return None
        if not token.is_active:
            self.session.rollback()
            raise TokenValidationError("token", f"a {token.state} token cannot be rotated")
        grace = self.config.rotation_grace if grace is None else grace
        if grace < timedelta(0) or grace > MAX_ROTATION_GRACE:
            raise TokenValidationError("grace", "must be between 0 and 30 minutes")
        now = utcnow()
        self.session.execute(
            sa.update(TokenSecret)
            .where(TokenSecret.token_id == token.id, TokenSecret.valid_until.is_(None))
            .values(valid_until=now + grace)
        )
        secret = self._add_secret(token, now)
        token.rotated_at = now
        self._add_event(
            "rotated", token, actor=rotated_by, detail=f"grace={int(grace.total_seconds())}s"
        )
        self._commit()
        self._signal("token_rotated", token=token, actor=rotated_by, grace_until=now + grace)
        return NewToken(secret, self._detached(token))

    def prune(self, older_than: timedelta, *, dry_run: bool = False) -> list[AccessToken]:
        """Delete tokens revoked or expired more than ``older_than`` ago. The
        audit log keeps their history."""
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
            self._add_event("pruned", token, actor="prune")
            # Detached with what was loaded, so callers can still describe them.
            self.session.expunge(token)
        self.session.execute(sa.delete(TokenSecret).where(TokenSecret.token_id.in_(ids)))
        self.session.execute(sa.delete(AccessToken).where(AccessToken.id.in_(ids)))
        self._commit()
        return doomed

    def events(self, token_id: str | None = None, limit: int = 100) -> Sequence[TokenEvent]:
        query = sa.select(TokenEvent).order_by(TokenEvent.id.desc()).limit(limit)
        if token_id is not None:
            query = query.where(TokenEvent.token_id == token_id)
        return self.session.scalars(query).all()

    # -- the request path ---------------------------------------------------

    def authenticate(self, secret: str, client: str | None) -> AuthenticatedToken:
        """The token this secret belongs to, if it may be used now.

        Unknown, malformed, revoked, expired and rotated-out secrets all raise
        the same :class:`InvalidToken`; the reason only goes to signals and the
        audit log. A database error raises :class:`StorageUnavailable`.
        """
        if not tokenformat.is_well_formed(secret, self.config.prefix):
            raise self.reject("malformed", None, client)
        candidates = self.digester.candidates(secret)
        row = self._lookup.find(candidates)
        if row is None or not any(hmac.compare_digest(row.digest, c) for c in candidates):
            raise self.reject("unknown", None, client)
        now = utcnow()
        if row.valid_until is not None and row.valid_until <= now:
            self._reused(row.id, client, row.revoked_at is None)
            raise self.reject("rotated", row.id, client)
        if row.revoked_at is not None:
            raise self.reject("revoked", row.id, client)
        if row.expires_at is not None and row.expires_at <= now:
            raise self.reject("expired", row.id, client)
        return AuthenticatedToken(
            row.id,
            row.name,
            row.type,
            row.workspace,
            row.project,
            row.repository,
            row.scopes,
            self.catalog.closure(row.scopes),
            row.created_by,
            row.expires_at,
            row.last_used_at,
        )

    def record_use(self, token: AuthenticatedToken, client: str | None) -> None:
        """Called once a request is allowed: never on the failure path, and at
        most once per ``ACCESSTOKENS_LAST_USED_RESOLUTION`` per token."""
        now = utcnow()
        if token.last_used_at is None or now - token.last_used_at >= self._resolution:
            self._touch(token.id, now, client)

    def reject(self, reason: str, token_id: str | None, client: str | None) -> InvalidToken:
        """Count a failed authentication and say why, to signals only."""
        self.record_failure(reason, token_id, client)
        return InvalidToken()

    def record_failure(self, reason: str, token_id: str | None, client: str | None) -> None:
        """Failures are aggregated per (reason, token or client) and written at
        most once per interval each, so a flood of garbage cannot flood the
        audit table."""
        self._signal("token_rejected", reason=reason, token_id=token_id, client=client)
        (reason, token_id, client), due = self._failures.add((reason, token_id, client))
        if due:
            self._write_event(
                action="auth_failed",
                token_id=token_id,
                client=client,
                count=due,
                detail=reason,
            )

    # -- internals ----------------------------------------------------------

    def _add_secret(self, token: AccessToken, now: datetime) -> str:
        secret = tokenformat.generate(self.config.prefix)
        token.hint = tokenformat.hint(secret)
        self.session.add(token)
        self.session.add(
            TokenSecret(digest=self.digester.digest(secret), token_id=token.id, created_at=now)
        )
        return secret

    def _add_event(
        self, action: str, token: AccessToken, actor: str | None, detail: str | None = None
    ) -> None:
        self.session.add(
            TokenEvent(
                at=utcnow(),
                action=action,
                token_id=token.id,
                actor=actor,
                workspace=token.workspace,
                project=token.project,
                repository=token.repository,
                detail=detail,
            )
        )

    def _revoke(self, token: AccessToken, actor: str | None, why: str) -> None:
        token.revoked_at = utcnow()
        token.revoked_by = actor
        self._add_event("revoked", token, actor=actor, detail=why)

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

    @contextmanager
    def _request_path_transaction(self, best_effort: bool = True) -> Iterator[Connection]:
        """A short transaction of its own, apart from the app's session, that
        gives up after ``ACCESSTOKENS_STATEMENT_TIMEOUT`` like the lookup. A
        ``best_effort`` write on SQLite also gives up quickly when the app
        holds the write lock, rather than stall the request for seconds."""
        engine = self._engine()
        if isinstance(engine.pool, StaticPool):
            # One connection for everything (in-memory SQLite): write inside
            # the app's session, never committing or rolling back its work.
            yield self.session.connection()
            return
        with engine.begin() as conn:
            timeout = self.config.statement_timeout_ms
            if timeout and conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout)}")
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

    def _touch(self, token_id: str, now: datetime, client: str | None) -> None:
        """Record use, at most once per resolution, by whichever worker gets
        there first. Never fails the request."""
        t = TOKENS
        cutoff = now - self.config.last_used_resolution
        try:
            with self._request_path_transaction() as conn:
                conn.execute(
                    t.update()
                    .where(
                        t.c.id == token_id,
                        sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at <= cutoff),
                    )
                    .values(last_used_at=now, last_used_ip=client)
                )
        except SQLAlchemyError:
            log.warning("could not record use of access token %s", token_id, exc_info=True)

    def _reused(self, token_id: str, client: str | None, active: bool) -> None:
        """A secret rotated out and past its grace window was presented: it
        leaked, or a client was never updated. Like GitLab, we revoke the token
        (unless ``ACCESSTOKENS_REVOKE_ON_REUSE`` is off), since whoever holds
        the old secret may hold the new one too."""
        revoke = self.config.revoke_on_reuse and active
        try:
            with self._request_path_transaction(best_effort=False) as conn:
                if revoke:
                    t = TOKENS
                    conn.execute(
                        t.update()
                        .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                        .values(revoked_at=utcnow(), revoked_by="reuse detection")
                    )
                conn.execute(
                    EVENTS.insert().values(
                        at=utcnow(),
                        action="reused",
                        token_id=token_id,
                        client=client,
                        count=1,
                        detail="revoked" if revoke else None,
                    )
                )
        except SQLAlchemyError:
            log.error("could not record reuse of access token %s", token_id, exc_info=True)
            return
        self._signal("token_reused", token_id=token_id, client=client, revoked=revoke)

    def _write_event(self, **values: Any) -> None:
        try:
            with self._request_path_transaction() as conn:
                conn.execute(EVENTS.insert().values(at=utcnow(), **values))
        except SQLAlchemyError:
            log.warning("could not write audit event %s", values.get("action"), exc_info=True)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TokenValidationError("name", "required")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        raise TokenValidationError("name", f"at most {NAME_MAX_LENGTH} characters")
    if not name.isprintable():
        raise TokenValidationError("name", "must not contain control characters")
    return name


def _check_resource(workspace: object, project: object, repository: object) -> Resource:
    for field, value in (
        ("workspace", workspace),
        ("project", project),
        ("repository", repository),
    ):
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise TokenValidationError(field, "must be a string of at most 255 characters")
        if isinstance(value, str) and not value.strip():
            # "" must not quietly widen a repository token to the workspace.
            raise TokenValidationError(field, "must not be empty")
    try:
        return Resource.of(workspace, project, repository)  # type: ignore[arg-type]
    except ValueError as e:
        field, _, message = str(e).partition(": ")
        raise TokenValidationError(field, message) from None


def _days(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return f"{int(delta.total_seconds())} seconds"
    return f"{delta.days} days"


class _FailureCounter:
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
