"""Add canary tokens and where a leaked token was reported.

Revision ID: d8f2b3c4e561
Revises: c5e1a0b7d342
Create Date: 2026-12-09 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "d8f2b3c4e561"
down_revision: str | None = "c5e1a0b7d342"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add or drop columns in place in every version.
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(
            sa.Column("canary", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("leak_provider", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("leak_url", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_column("leak_url")
        batch.drop_column("leak_provider")
        batch.drop_column("canary")
