"""The tables of the OIDC exchange: trust policies, and the ID tokens
already exchanged (replay protection).

They sit on the token tables' metadata (``models.Base``), so ``init_app``
registers them and ``db.create_all()`` creates them. A minted token names its
policy in ``AccessToken.policy_id``; no foreign key, so deleting a policy
keeps the (revoked) tokens it minted and their audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .models import Base
from .models import Bound
from .models import LEVEL_MAX_LENGTH
from .models import ResourceKey
from .models import ScopeList
from .models import UTCDateTime
from .models import utcnow

#: Issuer names, as ``ACCESSTOKENS_OIDC_ISSUERS`` keys them.
ISSUER_NAME_MAX_LENGTH = 64


class TrustPolicy(Bound, Base):
    """Who may exchange an ID token for a token of one resource: an issuer,
    the claims its tokens must carry (every one equal), the scopes and the
    lifetime of what is minted."""

    __tablename__ = "accesstokens_trust_policy"
    __table_args__ = (Index("ix_accesstokens_trust_policy_resource", "resource"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The level of the resource its tokens are bound to.
    type: Mapped[str] = mapped_column(String(LEVEL_MAX_LENGTH))
    #: That resource's key, as on tokens.
    resource_key: Mapped[str] = mapped_column("resource", ResourceKey)
    issuer: Mapped[str] = mapped_column(String(ISSUER_NAME_MAX_LENGTH), index=True)
    #: The claims as a JSON object, keys sorted.
    claims_json: Mapped[str] = mapped_column("claims", Text)
    scopes: Mapped[Sequence[str]] = mapped_column(ScopeList)
    lifetime_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))

    @property
    def claims(self) -> dict[str, Any]:
        value = json.loads(self.claims_json)
        return value if isinstance(value, dict) else {}

    @property
    def lifetime(self) -> timedelta:
        return timedelta(seconds=self.lifetime_seconds)

    def __repr__(self) -> str:
        return f"<TrustPolicy {self.id} {self.issuer} {self.type}>"


class ExchangedIDToken(Base):
    """An ID token already exchanged, remembered until it expires. The
    primary key is what makes a replay fail, in every worker at once:
    whoever inserts the row mints the token."""

    __tablename__ = "accesstokens_oidc_replay"

    #: SHA-256 hex of the issuer's name and the ``jti`` (or of the whole ID
    #: token, for issuers without ``jti``): never the token itself.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
