"""Record observed use: the scopes that served a token's requests and the
resources they named, and since when each token is tracked.

Revision ID: e3a9c7d1f025
Revises: e3a91c5d7f20
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone

import sqlalchemy as sa
from alembic import op

revision: str = "e3a9c7d1f025"
down_revision: str | None = "e3a91c5d7f20"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("usage_since", sa.DateTime(), nullable=True))
    # Tokens older than the recording were not watched before now: their
    # usage answer says so, rather than "never needed" since creation.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    tokens = sa.table("accesstokens_token", sa.column("usage_since", sa.DateTime()))
    op.execute(tokens.update().values(usage_since=now))
    op.create_table(
        "accesstokens_scope_use",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("last_needed", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", "scope"),
    )
    op.create_table(
        "accesstokens_resource_use",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=1024), nullable=False),
        sa.Column("last_used", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", "resource"),
    )


def downgrade() -> None:
    op.drop_table("accesstokens_resource_use")
    op.drop_table("accesstokens_scope_use")
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_column("usage_since")
