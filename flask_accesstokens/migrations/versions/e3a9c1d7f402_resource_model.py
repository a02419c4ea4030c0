"""Bind tokens to a resource of any declared model: one ``resource`` key.

The workspace, project and repository columns become one key, ``level=name``
pairs from the top joined by ``/`` (names hold no ``/``), so any model's
resources fit and a subtree is a key prefix under one index. Every existing
token keeps working: its key is built from the columns it replaces, in the
Bitbucket model's naming (a repository is ``workspace=…/repository=…``).

Revision ID: e3a9c1d7f402
Revises: d8f2b3c4e561
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "e3a9c1d7f402"
down_revision: str | None = "d8f2b3c4e561"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

KEY = sa.String(length=2048).with_variant(sa.String(length=2048, collation="C"), "postgresql")


def _key() -> sa.ColumnElement[str]:
    """The key of a row of the old schema, in SQL (SQLite and PostgreSQL)."""
    ws = sa.literal_column("workspace", sa.String())
    project = sa.literal_column("project", sa.String())
    repository = sa.literal_column("repository", sa.String())
    kind = sa.literal_column("type", sa.String())
    return sa.case(
        (kind == "repository", "workspace=" + ws + "/repository=" + repository),
        (kind == "project", "workspace=" + ws + "/project=" + project),
        else_="workspace=" + ws,
    )


def _event_key() -> sa.ColumnElement[str]:
    ws = sa.literal_column("workspace", sa.String())
    project = sa.literal_column("project", sa.String())
    repository = sa.literal_column("repository", sa.String())
    return sa.case(
        (ws.is_(None), None),
        (repository.is_not(None), "workspace=" + ws + "/repository=" + repository),
        (project.is_not(None), "workspace=" + ws + "/project=" + project),
        else_="workspace=" + ws,
    )


def upgrade() -> None:
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("resource", KEY, nullable=True))
    op.execute(f"UPDATE accesstokens_token SET resource = {_compile(_key())}")
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_index("ix_accesstokens_token_resource")
        batch.alter_column("resource", existing_type=KEY, nullable=False)
        batch.alter_column("type", existing_type=sa.String(16), type_=sa.String(32))
        batch.drop_column("repository")
        batch.drop_column("project")
        batch.drop_column("workspace")
        batch.create_index("ix_accesstokens_token_resource", ["resource", "created_at"])
    with op.batch_alter_table("accesstokens_event") as batch:
        batch.add_column(sa.Column("resource", KEY, nullable=True))
    op.execute(f"UPDATE accesstokens_event SET resource = {_compile(_event_key())}")
    with op.batch_alter_table("accesstokens_event") as batch:
        batch.drop_column("repository")
        batch.drop_column("project")
        batch.drop_column("workspace")


def downgrade() -> None:
    """Back to three columns: possible only for Bitbucket-model keys."""
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.add_column(sa.Column("workspace", sa.String(255), nullable=True))
        batch.add_column(sa.Column("project", sa.String(255), nullable=True))
        batch.add_column(sa.Column("repository", sa.String(255), nullable=True))
    with op.batch_alter_table("accesstokens_event") as batch:
        batch.add_column(sa.Column("workspace", sa.String(255), nullable=True))
        batch.add_column(sa.Column("project", sa.String(255), nullable=True))
        batch.add_column(sa.Column("repository", sa.String(255), nullable=True))
    bind = op.get_bind()
    for table in ("accesstokens_token", "accesstokens_event"):
        rows = bind.execute(sa.text(f"SELECT id, resource FROM {table}")).all()
        for row_id, key in rows:
            values = dict(p.split("=", 1) for p in key.split("/")) if key else {}
            bind.execute(
                sa.text(
                    f"UPDATE {table} SET workspace = :w, project = :p, repository = :r"
                    " WHERE id = :id"
                ),
                {
                    "w": values.get("workspace"),
                    "p": values.get("project"),
                    "r": values.get("repository"),
                    "id": row_id,
                },
            )
    with op.batch_alter_table("accesstokens_token") as batch:
        batch.drop_index("ix_accesstokens_token_resource")
        batch.alter_column("workspace", existing_type=sa.String(255), nullable=False)
        batch.alter_column("type", existing_type=sa.String(32), type_=sa.String(16))
        batch.drop_column("resource")
        batch.create_index(
            "ix_accesstokens_token_resource",
            ["workspace", "project", "repository", "created_at"],
        )
    with op.batch_alter_table("accesstokens_event") as batch:
        batch.drop_column("resource")


def _compile(expression: sa.ColumnElement[str]) -> str:
    bind = op.get_bind()
    return str(expression.compile(dialect=bind.dialect, compile_kwargs={"literal_binds": True}))
