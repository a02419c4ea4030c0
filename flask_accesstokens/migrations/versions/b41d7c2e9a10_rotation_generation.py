"""Add the token's secret generation, for compare-and-set rotation.

Revision ID: b41d7c2e9a10
Revises: a7c3e9f1b201
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "b41d7c2e9a10"
down_revision: str | None = "a7c3e9f1b201"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_column("generation")
