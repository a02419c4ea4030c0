"""On PostgreSQL, notify listeners of every change to a token or secret row.

The trigger behind the request path's row cache (``pgchange.py``): an update,
delete or truncate of either table sends ``NOTIFY accesstokens``, plain SQL
included. Other databases get nothing.

Revision ID: e3a9c1d7f802
Revises: e3a9c7d1f025
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from alembic import op

from flask_accesstokens.pgchange import DROP_DDL
from flask_accesstokens.pgchange import TRIGGER_DDL

revision: str = "e3a9c1d7f802"
down_revision: str | None = "e3a9c7d1f025"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statements in TRIGGER_DDL.values():
        for statement in statements:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in DROP_DDL:
        op.execute(statement)
