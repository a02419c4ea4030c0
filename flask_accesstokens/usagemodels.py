"""The tables of observed use: which granted scope served a token's requests
and which resources they named, each as one small row per (token, scope) and
per (token, resource) holding only when it was last seen. No request log:
the tables grow with what a token can do, not with how much it is used.

They sit on the same :class:`~sqlalchemy.MetaData` as the token tables, so
``init_app`` copies them onto the app's ``db.metadata`` with the rest. No
foreign key to the token: on PostgreSQL checking one takes a share lock on
the token's row, so a request's best-effort write would wait behind any
transaction holding that row. Pruning a token deletes its rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .models import Base
from .models import UTCDateTime

#: Longest stored resource key (``usage.resource_key``): three names of at
#: most 255 characters and their JSON punctuation.
RESOURCE_KEY_MAX_LENGTH = 1024
#: Resources remembered per token: past this many, new ones are not recorded.
MAX_RESOURCES_PER_TOKEN = 100


class ScopeUse(Base):
    """A granted scope that served at least one request of its token."""

    __tablename__ = "accesstokens_scope_use"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: The last request it served, to the last-used resolution.
    last_needed: Mapped[datetime] = mapped_column(UTCDateTime)


class ResourceUse(Base):
    """A resource inside a token's binding that one of its requests named."""

    __tablename__ = "accesstokens_resource_use"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The resource as :func:`flask_accesstokens.usage.resource_key` writes it.
    resource: Mapped[str] = mapped_column(String(RESOURCE_KEY_MAX_LENGTH), primary_key=True)
    last_used: Mapped[datetime] = mapped_column(UTCDateTime)


#: The same tables for Core statements (the request path uses no ORM).
SCOPE_USES = cast(Table, ScopeUse.__table__)
RESOURCE_USES = cast(Table, ResourceUse.__table__)
