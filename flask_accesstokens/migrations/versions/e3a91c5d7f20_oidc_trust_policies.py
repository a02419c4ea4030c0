"""Add OIDC trust policies, exchanged ID tokens and the minting policy of a token.

Revision ID: e3a91c5d7f20
Revises: e3a9c1d7f402
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

KEY = sa.String(length=2048).with_variant(sa.String(length=2048, collation="C"), "postgresql")

revision: str = "e3a91c5d7f20"
down_revision: str | None = "e3a9c1d7f402"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "accesstokens_trust_policy",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("resource", KEY, nullable=False),
        sa.Column("issuer", sa.String(length=64), nullable=False),
        sa.Column("claims", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("lifetime_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_accesstokens_trust_policy_resource",
        "accesstokens_trust_policy",
        ["resource"],
    )
    op.create_index("ix_accesstokens_trust_policy_issuer", "accesstokens_trust_policy", ["issuer"])
    op.create_table(
        "accesstokens_oidc_replay",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        "ix_accesstokens_oidc_replay_expires_at", "accesstokens_oidc_replay", ["expires_at"]
    )
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("policy_id", sa.String(length=32), nullable=True))
        batch.create_index("ix_accesstokens_token_policy_id", ["policy_id"])


def downgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_index("ix_accesstokens_token_policy_id")
        batch.drop_column("policy_id")
    op.drop_index("ix_accesstokens_oidc_replay_expires_at", "accesstokens_oidc_replay")
    op.drop_table("accesstokens_oidc_replay")
    op.drop_index("ix_accesstokens_trust_policy_issuer", "accesstokens_trust_policy")
    op.drop_index("ix_accesstokens_trust_policy_resource", "accesstokens_trust_policy")
    op.drop_table("accesstokens_trust_policy")
