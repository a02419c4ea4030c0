"""What only PostgreSQL can show: several hosts on one server, a server in
another time zone, and forked workers. The rest of the suite runs here too,
through the ``database_uri`` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import needs_postgresql
from services import require_postgresql
from services import schema_of
from services import with_options

from flask_accesstokens import AccessTokens

pytestmark = needs_postgresql

REPO = "/repositories/acme/api"


@pytest.fixture
def database_uri() -> Iterator[str]:
    with fresh_schema(require_postgresql()) as url:
        yield url


@pytest.fixture
def second_host(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    """Another app on the same server: its own engine and connections, as a
    worker on another machine would have."""
    parts = make_app(database_uri)
    yield parts
    with parts[0].app_context():
        AccessTokens.dispose_connections()
        parts[1].engine.dispose()


def test_tables_live_in_the_tests_own_schema(app: Flask, db: SQLAlchemy, database_uri: str) -> None:
    with db.engine.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
        tables = set(sa.inspect(conn).get_table_names())
    assert schema == schema_of(database_uri)
    assert {"accesstokens_token", "accesstokens_secret", "accesstokens_event"} <= tables


def test_revocation_reaches_another_host_on_its_next_request(
    app: Flask, tokens: AccessTokens, second_host: tuple[Flask, SQLAlchemy, AccessTokens]
) -> None:
    other = second_host[0].test_client()
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    # The other host has an idle lookup connection from this request.
    assert other.get(REPO, headers=bearer(new.secret)).status_code == 200

    tokens.revoke_token(new.token.id, revoked_by="alice")

    assert other.get(REPO, headers=bearer(new.secret)).status_code == 401


def test_a_token_made_on_one_host_works_on_another_at_once(
    app: Flask, tokens: AccessTokens, second_host: tuple[Flask, SQLAlchemy, AccessTokens]
) -> None:
    other = second_host[0].test_client()
    for n in range(5):
        new = tokens.create_token(
            name=f"CI {n}", workspace="acme", repository="api", scopes=["repository"]
        )
        assert other.get(REPO, headers=bearer(new.secret)).status_code == 200


def test_server_time_zone_does_not_shift_times(database_uri: str) -> None:
    """The columns hold naive UTC; a session in another zone must not move
    ``last_used_at`` or make an unexpired token look expired."""
    url = with_options(database_uri, timezone="Pacific/Kiritimati")  # UTC+14
    app, db, tokens = make_app(url)
    try:
        with app.app_context():
            soon = datetime.now(timezone.utc) + timedelta(hours=2)
            new = tokens.create_token(
                name="CI",
                workspace="acme",
                repository="api",
                scopes=["repository"],
                expires_at=soon,
            )
            before = datetime.now(timezone.utc)
            response = app.test_client().get(REPO, headers=bearer(new.secret))
            assert response.status_code == 200
            db.session.expire_all()
            record = tokens.get_token(new.token.id)
            assert record is not None and record.last_used_at is not None
            assert record.last_used_at.tzinfo is not None
            assert abs(record.last_used_at - before) < timedelta(seconds=30)
            assert record.expires_at is not None
            assert abs(record.expires_at - soon) < timedelta(seconds=1)
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def _fork_requests(app: Flask, secret: str, count: int) -> int:
    """Fork a child that makes ``count`` requests on its own and exits 0 if
    all were accepted, 2 if any was refused. Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with app.app_context():
                client = app.test_client()
                statuses = {
                    client.get(REPO, headers=bearer(secret)).status_code for _ in range(count)
                }
                code = 0 if statuses == {200} else 2
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_workers_never_share_the_parents_connections(
    app: Flask, tokens: AccessTokens, client: Any
) -> None:
    """gunicorn ``--preload`` forks after the app is built. A child that used
    the parent's idle socket while the parent does would interleave their
    protocol messages; one that closed it would break the parent's next
    lookup. Parent and children run lookups at the same time here."""
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200

    children = [_fork_requests(app, new.secret, 50) for _ in range(2)]
    statuses = [client.get(REPO, headers=bearer(new.secret)).status_code for _ in range(50)]
    assert [_exit_code(pid) for pid in children] == [0, 0]
    assert set(statuses) == {200}
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200

    tokens.revoke_token(new.token.id)
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 401
    assert _exit_code(_fork_requests(app, new.secret, 1)) == 2
