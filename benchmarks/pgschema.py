"""A PostgreSQL schema of a benchmark's own, so its tables never meet
another run's (or the tests') on a shared server: created empty, dropped
after, and only that one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def in_schema(url: str, name: str) -> str:
    """``url`` with every connection's ``search_path`` set to ``name``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}"


@contextlib.contextmanager
def own_schema(url: str, name: str) -> Iterator[str]:
    """Create schema ``name`` afresh (dropping a leftover of this benchmark's
    own), yield a URL using it, drop it after."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def reset(create: bool) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            if create:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))

    try:
        reset(create=True)
        yield in_schema(url, name)
    finally:
        reset(create=False)
        engine.dispose()
