"""The raw-database floor: a hand-written decorator that runs one raw DBAPI
statement per request (stdlib ``sqlite3`` or psycopg, on a connection each
thread keeps) and refuses unknown or revoked tokens. No scopes, binding,
expiry, usage or audit: the least a token check that sees revocation at once
can cost, if it asks the database on every request. The benchmarks measure
``@require_scope`` against it in the same run."""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from flask import abort
from flask import request

from flask_accesstokens.tokenformat import Digester

F = TypeVar("F", bound=Callable[..., Any])

SQL = (
    "SELECT t.revoked_at FROM accesstokens_secret s JOIN accesstokens_token t"
    " ON t.id = s.token_id WHERE s.digest = {}"
)


def connector(url: str) -> tuple[Callable[[], Any], str]:
    """A function that opens a raw connection to ``url`` (a SQLAlchemy URL),
    and the driver's parameter marker."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        return lambda: sqlite3.connect(path, isolation_level=None), "?"
    import psycopg

    plain = "postgresql://" + url.split("://", 1)[1]
    return lambda: psycopg.connect(plain, autocommit=True), "%s"


def one_statement(url: str, secret_key: str) -> Callable[[F], F]:
    connect, marker = connector(url)
    sql = SQL.format(marker)
    digester = Digester([secret_key])
    local = threading.local()

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                abort(401)
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = connect()
            row = conn.execute(sql, (digester.digest(header[7:]),)).fetchone()
            if row is None or row[0] is not None:
                abort(401)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
