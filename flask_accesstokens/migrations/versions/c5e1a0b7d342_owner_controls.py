"""Add client address allow lists, recent clients and sent expiry notices.

Revision ID: c5e1a0b7d342
Revises: b41d7c2e9a10
Create Date: 2026-12-09 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "c5e1a0b7d342"
down_revision: str | None = "b41d7c2e9a10"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("allowed_ips", sa.Text(), nullable=True))
        batch.add_column(sa.Column("recent_ips", sa.Text(), nullable=True))
        batch.add_column(sa.Column("recent_clients", sa.Text(), nullable=True))
        batch.add_column(sa.Column("new_clients_since", sa.DateTime(), nullable=True))
        batch.add_column(
            sa.Column("new_clients_count", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "accesstokens_notice",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["accesstokens_token.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_id", "kind", name="uq_accesstokens_notice"),
    )


def downgrade() -> None:
    op.drop_table("accesstokens_notice")
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_column("new_clients_count")
        batch.drop_column("new_clients_since")
        batch.drop_column("recent_clients")
        batch.drop_column("recent_ips")
        batch.drop_column("allowed_ips")
