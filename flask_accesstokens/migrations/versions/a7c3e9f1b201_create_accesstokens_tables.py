"""Create the access token, secret digest and audit event tables.

Revision ID: a7c3e9f1b201
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "a7c3e9f1b201"
down_revision: str | None = None
# The extension's own history, with its own base: apps apply it next to theirs.
branch_labels: tuple[str, ...] | None = ("accesstokens",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "accesstokens_token",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("workspace", sa.String(length=255), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=True),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_ip", sa.String(length=64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=255), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("rotated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_accesstokens_token_resource",
        "accesstokens_token",
        ["workspace", "project", "repository", "created_at"],
    )
    op.create_table(
        "accesstokens_secret",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["accesstokens_token.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_accesstokens_secret_token_id", "accesstokens_secret", ["token_id"])
    op.create_table(
        "accesstokens_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("workspace", sa.String(length=255), nullable=True),
        sa.Column("project", sa.String(length=255), nullable=True),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_accesstokens_event_at", "accesstokens_event", ["at"])
    op.create_index("ix_accesstokens_event_token", "accesstokens_event", ["token_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_accesstokens_event_token", table_name="accesstokens_event")
    op.drop_index("ix_accesstokens_event_at", table_name="accesstokens_event")
    op.drop_table("accesstokens_event")
    op.drop_index("ix_accesstokens_secret_token_id", table_name="accesstokens_secret")
    op.drop_table("accesstokens_secret")
    op.drop_index("ix_accesstokens_token_resource", table_name="accesstokens_token")
    op.drop_table("accesstokens_token")
