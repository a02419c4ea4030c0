"""``pgchange``: on PostgreSQL a worker answers tokens it has seen without a
round trip, and every call that changes a token still holds from the moment
it returns.

"Without a round trip" is observed as the store's query function not being
called; every refusal is observed over the app's own HTTP surface. Plain SQL
changes are honoured once the bound has passed. Failing known tokens are never
kept, so they cost the statement an unknown token costs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import needs_postgresql
from services import require_postgresql

from flask_accesstokens import AccessTokens
from flask_accesstokens.errors import ConfigurationError
from flask_accesstokens.pgchange import PgChange
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.store import RequestStore
from flask_accesstokens.tokenformat import generate

pytestmark = needs_postgresql

REPO = "/repositories/acme/api"
BOUND = 0.2


class Rig:
    def __init__(self, url: str, **config: Any) -> None:
        self.url = url
        config.setdefault("ACCESSTOKENS_POSTGRESQL_SYNC_BOUND", BOUND)
        self.app, self.db, self.tokens = make_app(url, **config)
        self.client = self.app.test_client()
        self.queries = 0
        store = self.store
        original = store._query

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.queries += 1
            return original(*args, **kwargs)

        store._query = counted  # type: ignore[method-assign]

    @property
    def store(self) -> RequestStore:
        return Pipeline.of(self.app).store

    @property
    def pg(self) -> PgChange:
        pg = self.store._pg
        assert isinstance(pg, PgChange)
        return pg

    def get(self, secret: str) -> int:
        return int(self.client.get(REPO, headers=bearer(secret)).status_code)

    def synced(self, timeout: float = 5) -> None:
        """Wait until the listener has synced since now: it vouches for the
        cache, and every change committed before now has reached it."""
        now = time.monotonic()
        deadline = now + timeout
        while True:
            pg = self.store._pg
            if isinstance(pg, PgChange) and pg.synced_at > now:
                return
            assert time.monotonic() < deadline, "the listener never synced"
            time.sleep(0.01)

    def execute(self, sql: str, **params: Any) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def new(self, **fields: Any) -> Any:
        values: dict[str, Any] = {
            "name": "CI",
            "workspace": "acme",
            "repository": "api",
            "scopes": ["repository"],
        }
        values.update(fields)
        return self.tokens.create_token(**values)

    def warm(self, secret: str) -> None:
        """Seen once, then answered from the cache."""
        assert self.get(secret) == 200
        self.synced()
        assert self.get(secret) == 200
        before = self.queries
        assert self.get(secret) == 200
        assert self.queries == before, "a warm token still ran a query"


@pytest.fixture
def rig() -> Iterator[Rig]:
    with fresh_schema(require_postgresql()) as url:
        rig = Rig(url)
        with rig.app.app_context():
            yield rig
            AccessTokens.dispose_connections()
            rig.db.session.remove()
            rig.db.engine.dispose()


def test_a_warm_token_needs_no_round_trip(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    before = rig.queries
    for _ in range(50):
        assert rig.get(new.secret) == 200
    assert rig.queries == before


def _timed(call: Any) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


@pytest.mark.parametrize(
    "change",
    [
        "revoke_token",
        "revoke_resource_tokens",
        "delete_self",
        "rotate_without_grace",
        "public_revocation",
    ],
)
def test_every_revoking_call_holds_when_it_returns(rig: Rig, change: str) -> None:
    new = rig.new()
    rig.warm(new.secret)
    if change == "revoke_token":
        took = _timed(lambda: rig.tokens.revoke_token(new.token.id, revoked_by="alice"))
    elif change == "revoke_resource_tokens":
        took = _timed(lambda: rig.tokens.revoke_resource_tokens(workspace="acme"))
    elif change == "delete_self":
        prefix = rig.app.config["ACCESSTOKENS_API_URL_PREFIX"]
        started = time.monotonic()
        answer = rig.client.delete(f"{prefix}/access-tokens/self", headers=bearer(new.secret))
        took = time.monotonic() - started
        assert answer.status_code == 204
    elif change == "rotate_without_grace":
        took = _timed(lambda: rig.tokens.rotate_token(new.token.id, grace=timedelta(0)))
    else:
        prefix = rig.app.config["ACCESSTOKENS_API_URL_PREFIX"]
        started = time.monotonic()
        answer = rig.client.post(
            f"{prefix}/access-tokens/revoke", json={"access_tokens": [new.secret]}
        )
        took = time.monotonic() - started
        assert answer.status_code == 202
    assert took >= BOUND
    assert rig.get(new.secret) == 401


def test_creating_a_token_does_not_wait(rig: Rig) -> None:
    assert _timed(rig.new) < BOUND


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE accesstokens_token SET revoked_at = now() WHERE id = :id",
        "DELETE FROM accesstokens_secret WHERE token_id = :id",
        "UPDATE accesstokens_secret SET valid_until = now() - interval '1 hour' "
        "WHERE token_id = :id",
        "TRUNCATE accesstokens_secret",
    ],
)
def test_plain_sql_is_honoured_after_the_bound(rig: Rig, sql: str) -> None:
    new = rig.new()
    rig.warm(new.secret)
    rig.execute(sql, id=new.token.id)
    time.sleep(BOUND)
    assert rig.get(new.secret) == 401


def test_failing_known_tokens_cost_what_unknown_ones_cost(rig: Rig) -> None:
    revoked = rig.new(name="revoked")
    rig.warm(revoked.secret)
    rig.tokens.revoke_token(revoked.token.id)
    canary = rig.tokens.create_canary(name="canary", workspace="acme")
    expired = rig.new(name="expired")
    rig.execute(
        "UPDATE accesstokens_token SET expires_at = now() - interval '1 minute' WHERE id = :id",
        id=expired.token.id,
    )
    unknown = generate("bbat")
    rig.synced()
    for secret in (revoked.secret, canary.secret, expired.secret, unknown):
        for _ in range(3):
            before = rig.queries
            assert rig.get(secret) == 401
            assert rig.queries == before + 1, "a failing token was answered without a statement"


def test_rotated_secret_is_read_again_when_its_grace_ends(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    rotated = rig.tokens.rotate_token(new.token.id, grace=timedelta(seconds=1.5))
    assert rotated is not None
    assert rig.get(new.secret) == 200  # within its grace
    time.sleep(1.6)
    assert rig.get(new.secret) == 401
    # Reuse after the grace revoked the token: its new secret is refused too.
    assert rig.get(rotated.secret) == 401


def test_a_stale_listener_means_a_statement_per_request(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    rig.pg.close()  # the listener stops: its last sync ages past the bound
    time.sleep(BOUND)
    before = rig.queries
    for _ in range(3):
        assert rig.get(new.secret) == 200
    assert rig.queries == before + 3


def test_a_killed_listener_reconnects_and_trusts_again(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    with rig.db.engine.connect() as conn:
        killed = conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = :pid"),
            {"pid": rig.pg._backend_pid},
        ).scalar()
    assert killed
    rig.execute("UPDATE accesstokens_token SET revoked_at = now() WHERE id = :id", id=new.token.id)
    time.sleep(BOUND)
    assert rig.get(new.secret) == 401
    other = rig.new(name="other")
    deadline = time.monotonic() + 5
    while True:
        assert rig.get(other.secret) == 200
        before = rig.queries
        assert rig.get(other.secret) == 200
        if rig.queries == before:
            break
        assert time.monotonic() < deadline, "the cache never came back"
        time.sleep(0.05)


def test_tables_without_the_trigger_are_never_trusted() -> None:
    with fresh_schema(require_postgresql()) as url:
        rig = Rig(url)
        with rig.app.app_context():
            rig.execute("DROP TRIGGER accesstokens_token_notify ON accesstokens_token")
            new = rig.new()
            assert rig.get(new.secret) == 200
            time.sleep(BOUND * 2)
            before = rig.queries
            for _ in range(3):
                assert rig.get(new.secret) == 200
            assert rig.queries == before + 3
            AccessTokens.dispose_connections()
            rig.db.session.remove()
            rig.db.engine.dispose()


def test_the_cache_can_be_turned_off() -> None:
    with fresh_schema(require_postgresql()) as url:
        rig = Rig(url, ACCESSTOKENS_POSTGRESQL_CACHE=False)
        with rig.app.app_context():
            new = rig.new()
            assert rig.get(new.secret) == 200
            assert rig.store._pg is None
            assert _timed(lambda: rig.tokens.revoke_token(new.token.id)) < BOUND
            assert rig.get(new.secret) == 401
            AccessTokens.dispose_connections()
            rig.db.session.remove()
            rig.db.engine.dispose()


@pytest.mark.parametrize("value", [0, -1, 2.5, "fast", timedelta(seconds=3)])
def test_the_bound_is_checked(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="ACCESSTOKENS_POSTGRESQL_SYNC_BOUND"):
        make_app("sqlite://", ACCESSTOKENS_POSTGRESQL_SYNC_BOUND=value)


def test_the_switch_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="ACCESSTOKENS_POSTGRESQL_CACHE"):
        make_app("sqlite://", ACCESSTOKENS_POSTGRESQL_CACHE="yes")


def _listeners(rig: Rig) -> int:
    with rig.db.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'accesstokens-listener' AND pid = :pid"
                ),
                {"pid": rig.pg._backend_pid},
            ).scalar()
        )


def test_dispose_stops_the_listener_and_closes_its_connection(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    pg = rig.pg
    assert _listeners(rig) == 1
    thread = pg._thread
    AccessTokens.dispose_connections()
    assert not thread.is_alive()
    deadline = time.monotonic() + 5
    while True:  # the server ends the backend a moment after the client left
        with rig.db.engine.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pg._backend_pid},
            ).scalar()
        if left == 0:
            break
        assert time.monotonic() < deadline, "the listener's backend is still there"
        time.sleep(0.02)
    # And the next request starts a new one.
    rig.warm(new.secret)


def test_a_dropped_app_leaves_no_listener() -> None:
    with fresh_schema(require_postgresql()) as url:
        app, db, tokens = make_app(url, ACCESSTOKENS_POSTGRESQL_SYNC_BOUND=BOUND)
        with app.app_context():
            new = tokens.create_token(
                name="CI", workspace="acme", repository="api", scopes=["repository"]
            )
            assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
            pg = Pipeline.of(app).store._pg
            assert isinstance(pg, PgChange)
            thread = pg._thread
            db.session.remove()
            db.engine.dispose()
        del app, db, tokens, pg
        import gc

        gc.collect()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_forked_child_starts_its_own_listener(rig: Rig) -> None:
    new = rig.new()
    rig.warm(new.secret)
    parent = rig.pg
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            with rig.app.app_context():
                ok = rig.get(new.secret) == 200
                pg = rig.store._pg
                ok = ok and isinstance(pg, PgChange) and pg is not parent
                rig.synced()
                before = rig.queries
                ok = ok and rig.get(new.secret) == 200 and rig.get(new.secret) == 200
                ok = ok and rig.queries == before + 1
                AccessTokens.dispose_connections()
                code = 0 if ok else 1
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    result = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert result == b"\x00"
    # The parent's listener was left alone.
    rig.synced()
    before = rig.queries
    assert rig.get(new.secret) == 200
    assert rig.queries == before
    assert threading.active_count() >= 1


@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_the_migration_makes_and_drops_the_trigger(tmp_path: Any) -> None:
    import flask_migrate
    from test_migrations import Migrating

    from flask_accesstokens.migrations import BRANCH_LABEL
    from flask_accesstokens.pgchange import TRIGGER_NAMES

    def triggers(host: Migrating) -> set[str]:
        with host.db.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid IN "
                    "(to_regclass('accesstokens_token'), to_regclass('accesstokens_secret'))"
                )
            )
            return {name for (name,) in rows}

    import logging

    saved = [(lg, lg.disabled) for lg in logging.Logger.manager.loggerDict.values()
             if isinstance(lg, logging.Logger)]  # fmt: skip
    handlers = list(logging.getLogger().handlers)
    with fresh_schema(require_postgresql()) as url:
        host = Migrating(url, tmp_path / "migrations")
        try:
            with host.app.app_context():
                flask_migrate.init(directory=host.directory)
                flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
                assert triggers(host) >= set(TRIGGER_NAMES)
                flask_migrate.downgrade(directory=host.directory, revision="d8f2b3c4e561")
                assert not triggers(host) & set(TRIGGER_NAMES)
                flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
                assert triggers(host) >= set(TRIGGER_NAMES)
        finally:
            host.dispose()
            for lg, disabled in saved:
                lg.disabled = disabled
            logging.getLogger().handlers[:] = handlers
