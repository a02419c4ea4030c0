"""The extension's revision scripts (Alembic skips this file)."""
