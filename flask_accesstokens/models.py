"""The extension's tables: tokens, their secrets' digests and the audit log.

They live on their own :class:`~sqlalchemy.MetaData`; ``init_app`` copies them
onto the app's ``db.metadata`` so ``db.create_all()`` and Flask-Migrate see
them. No column holds a secret or anything it can be recovered from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any
from typing import cast

from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import false as sa_false
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import TypeDecorator
from sqlalchemy import UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .resources import Resource

NAME_MAX_LENGTH = 255
#: Longest level name (a token's ``type``).
LEVEL_MAX_LENGTH = 32
#: Longest resource key: a few levels of 255-character names.
RESOURCE_KEY_MAX_LENGTH = 2048
#: Byte order on PostgreSQL too, so a subtree is one index range (``C``).
ResourceKey = String(RESOURCE_KEY_MAX_LENGTH).with_variant(
    String(RESOURCE_KEY_MAX_LENGTH, collation="C"), "postgresql"
)
#: Reported URLs longer than this are cut: they are shown, never followed.
LEAK_URL_MAX_LENGTH = 2048


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every database alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value)


def as_utc(value: Any) -> datetime | None:
    """Normalise what a driver returns (naive datetime, ISO string) to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class ScopeList(TypeDecorator[Sequence[str]]):
    """Scopes as one space-separated column (scope names contain no spaces)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Sequence[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else " ".join(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Sequence[str] | None:
        return None if value is None else tuple(value.split())


class Base(DeclarativeBase):
    metadata = MetaData()


class Bound:
    """What a row bound to a resource shows of it, from its key: the
    mapping, and Bitbucket's three names."""

    resource_key: Any

    @property
    def resource(self) -> dict[str, str]:
        """Level → name, from the top, as ``create_token`` was given them."""
        key = self.resource_key
        return {} if not key else Resource.from_key("", key).values

    @property
    def workspace(self) -> str | None:
        return self.resource.get("workspace")

    @property
    def project(self) -> str | None:
        return self.resource.get("project")

    @property
    def repository(self) -> str | None:
        return self.resource.get("repository")


class AccessToken(Bound, Base):
    """A token record: what it is bound to and may do. Never the secret."""

    __tablename__ = "accesstokens_token"
    __table_args__ = (Index("ix_accesstokens_token_resource", "resource", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    #: The bound level's name.
    type: Mapped[str] = mapped_column(String(LEVEL_MAX_LENGTH))
    #: What it is bound to: ``level=name`` pairs from the top, joined by
    #: ``/`` (see :class:`~flask_accesstokens.resources.Resource`), so one
    #: index serves a resource's tokens and a subtree's (a key prefix).
    resource_key: Mapped[str] = mapped_column("resource", ResourceKey)
    scopes: Mapped[Sequence[str]] = mapped_column(ScopeList)
    #: The token's last few characters, so people can tell tokens apart.
    hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Bumped by every rotation: a rotation only succeeds if the generation it
    #: read is still current (compare-and-set), so overlapping ones cannot both.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: A decoy: it never grants anything, and using it raises an alarm.
    canary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    #: Who reported the token leaked (``github``, ``public``...), when that
    #: is why it was revoked.
    leak_provider: Mapped[str | None] = mapped_column(String(32))
    #: Where the scanner found it, as reported: a public URL, not a secret.
    leak_url: Mapped[str | None] = mapped_column(String(LEAK_URL_MAX_LENGTH))
    #: Client address allow list: normalised networks, space-separated, or
    #: None for anywhere. Fixed at creation; read by the request path's lookup.
    allowed_ips: Mapped[str | None] = mapped_column(Text)
    #: The addresses of :attr:`recent_clients`, space-separated, newest first:
    #: read by the lookup so a request knows without a query whether its
    #: address is new.
    recent_ips: Mapped[str | None] = mapped_column(Text)
    #: Up to five ``{"ip", "user_agent", "last_seen"}`` as JSON, newest first.
    recent_clients_json: Mapped[str | None] = mapped_column("recent_clients", Text)
    #: The window that bounds immediate writes of new addresses, shared by
    #: every worker through a conditional UPDATE.
    new_clients_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    new_clients_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Since when observed use is recorded (``usage.py``); None: since
    #: ``created_at``. Tokens older than the recording start when it arrived.
    usage_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    #: The trust policy that minted this token in an OIDC exchange, or None
    #: for a token a person made (``trustmodels.py``).
    policy_id: Mapped[str | None] = mapped_column(String(32), index=True)

    @property
    def allowed_networks(self) -> list[str] | None:
        """The allow list as a list, or None for anywhere."""
        return None if self.allowed_ips is None else self.allowed_ips.split()

    @property
    def recent_clients(self) -> list[dict[str, Any]]:
        """Up to five recent clients, newest first: ``ip``, ``user_agent``
        and ``last_seen`` (ISO 8601 UTC)."""
        if not self.recent_clients_json:
            return []
        try:
            value = json.loads(self.recent_clients_json)
        except ValueError:
            return []
        return value if isinstance(value, list) else []

    def expires_within(self, delta: timedelta) -> bool:
        """Active and expiring within ``delta``: what the admin pages mark."""
        return (
            self.expires_at is not None
            and self.revoked_at is None
            and utcnow() < self.expires_at <= utcnow() + delta
        )

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def state(self) -> str:
        """``active``, ``revoked`` or ``expired``, for lists and filters."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"

    def __repr__(self) -> str:
        return f"<AccessToken {self.id} {self.type} {self.name!r}>"


class TokenSecret(Base):
    """The digest of one secret of a token. Rotation adds a row and gives the
    old one a ``valid_until``, so a grace window and reuse detection need no
    extra lookups: the request path finds a digest by primary key either way."""

    __tablename__ = "accesstokens_secret"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accesstokens_token.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None while this is the token's current secret.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TokenEvent(Bound, Base):
    """The audit log: who did what to which token, and failed attempts,
    aggregated. Never a secret."""

    __tablename__ = "accesstokens_event"
    __table_args__ = (Index("ix_accesstokens_event_token", "token_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(32))
    token_id: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(255))
    client: Mapped[str | None] = mapped_column(String(64))
    #: The token's resource key, as on the token.
    resource_key: Mapped[str | None] = mapped_column("resource", ResourceKey)
    count: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[str | None] = mapped_column(Text)


class TokenNotice(Base):
    """An expiry warning already sent: ``expiring:<days>`` or ``expired``.
    The unique key makes sending at most once even when two cron runs
    overlap: whoever inserts the row sends the signal."""

    __tablename__ = "accesstokens_notice"
    __table_args__ = (UniqueConstraint("token_id", "kind", name="uq_accesstokens_notice"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("accesstokens_token.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


#: The same tables for Core statements (the request path uses no ORM).
TOKENS = cast(Table, AccessToken.__table__)
SECRETS = cast(Table, TokenSecret.__table__)
EVENTS = cast(Table, TokenEvent.__table__)
