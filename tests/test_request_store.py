"""``store``: the request path's database access.

Lookups return decoded rows; connections come from a pool the store owns and
closes (at ``dispose()``, or when the app is dropped without it, with no
connection ever garbage-collected open); a forked child never uses or closes
its parent's connections; a connection the server dropped is replaced once;
failures are counted within bounds; and SQLite's remembered rows last only
until someone commits.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import sys
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
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

from flask_accesstokens import AccessTokens
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.state import app_state
from flask_accesstokens.store import RequestStore
from flask_accesstokens.store import TokenRow
from flask_accesstokens.storewrites import FailureCounter

REPO = "/repositories/acme/api"
EXPIRES = datetime(2031, 2, 3, 4, 5, 6, tzinfo=timezone.utc)


def store_of(app: Flask) -> RequestStore:
    return Pipeline.of(app).store


def digests(app: Flask, secret: str) -> list[str]:
    return app_state(app).digester.candidates(secret)


def make_token(tokens: AccessTokens, **values: Any) -> Any:
    fields: dict[str, Any] = {
        "name": "CI",
        "workspace": "acme",
        "repository": "api",
        "scopes": ["repository:write", "pipeline"],
        "created_by": "alice",
    }
    fields.update(values)
    return tokens.create_token(**fields)


def idle_connection(store: RequestStore) -> Any:
    """The driver connection the store's next lookup will use: the one it
    keeps, or else the one its pool would hand out."""
    if store._idle:
        return store._idle[-1].dbapi_connection
    fairy = store._own_pool().connect()
    try:
        return fairy.dbapi_connection
    finally:
        fairy.close()


def is_closed(raw: Any) -> bool:
    if isinstance(raw, sqlite3.Connection):
        try:
            raw.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(raw.closed)


def server_backends(url: str) -> set[int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT pid FROM pg_stat_activity")).scalars())
    finally:
        engine.dispose()


def wait_until_gone(url: str, pid: int) -> bool:
    """Whether the server's backend ``pid`` ends within a few seconds (a
    backend exits a moment after its client closes the socket)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if pid not in server_backends(url):
            return True
        time.sleep(0.05)
    return False


@contextmanager
def collected_garbage() -> Iterator[tuple[list[str], list[warnings.WarningMessage]]]:
    """What a garbage collection leaves behind: exceptions raised in
    ``__del__`` (psycopg warns, and with ``filterwarnings=error`` raises, for
    a connection collected open) and warnings, however they surface."""
    unraisable: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        unraisable.append(f"{info.exc_type.__name__}: {info.exc_value} ({info.object!r})")

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            yield unraisable, seen
            gc.collect()
    finally:
        sys.unraisablehook = previous


@pytest.fixture
def postgresql_uri() -> Iterator[str]:
    with fresh_schema(require_postgresql()) as url:
        yield url


@pytest.fixture
def pg_parts(postgresql_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    parts = make_app(postgresql_uri)
    with parts[0].app_context():
        yield parts
        parts[1].session.remove()
        AccessTokens.dispose_connections()
        parts[1].engine.dispose()


# -- lookups ---------------------------------------------------------------------------


def test_a_lookup_returns_the_decoded_row(app: Flask, tokens: AccessTokens) -> None:
    new = make_token(tokens, expires_at=EXPIRES)
    row = store_of(app).find(digests(app, new.secret))
    assert isinstance(row, TokenRow)
    assert row == TokenRow(
        id=new.token.id,
        name="CI",
        type="repository",
        resource="workspace=acme/repository=api",
        scopes=("repository:write", "pipeline"),
        created_by="alice",
        revoked_at=None,
        expires_at=EXPIRES,
        last_used_at=None,
        valid_until=None,
        digest=digests(app, new.secret)[0],
    )
    assert row.expires_at is not None and row.expires_at.tzinfo == timezone.utc


def test_a_lookup_decodes_revoked_used_and_rotated_out_rows(
    app: Flask, tokens: AccessTokens
) -> None:
    new = make_token(tokens, workspace="acme", repository=None, project="API",
                     scopes=["project"])  # fmt: skip
    assert app.test_client().get("/workspaces/acme/projects/API",
                                 headers=bearer(new.secret)).status_code == 200  # fmt: skip
    rotated = tokens.rotate_token(new.token.id, grace=timedelta(minutes=5))
    assert rotated is not None
    tokens.revoke_token(new.token.id)
    old = store_of(app).find(digests(app, new.secret))
    assert old is not None
    assert (old.type, old.resource, old.scopes) == ("project", "workspace=acme/project=API",
                                                    ("project",))  # fmt: skip
    for moment in (old.revoked_at, old.last_used_at, old.valid_until):
        assert moment is not None and moment.tzinfo == timezone.utc
    current = store_of(app).find(digests(app, rotated.secret))
    assert current is not None and current.valid_until is None
    assert current.id == old.id and current.digest != old.digest


def test_unknown_digests_find_nothing(app: Flask, tokens: AccessTokens) -> None:
    make_token(tokens)
    assert store_of(app).find(["0" * 64]) is None
    assert store_of(app).find(["0" * 64, "f" * 64]) is None


def test_several_digests_find_the_one_stored(app: Flask, tokens: AccessTokens) -> None:
    """As with an old key among the candidates: one statement, the match wins."""
    new = make_token(tokens)
    real = digests(app, new.secret)[0]
    for candidates in (["0" * 64, real], [real, "0" * 64], ["1" * 64, "2" * 64, real]):
        row = store_of(app).find(candidates)
        assert row is not None and row.digest == real


def test_an_unchanged_row_is_not_decoded_again_and_a_change_is_seen(
    app: Flask, db: SQLAlchemy, tokens: AccessTokens
) -> None:
    """The same row object while nothing changed (so the pipeline reuses
    the token it built from it); any change, even by plain SQL outside the
    library, is read once the PostgreSQL cache's bound has passed (at once
    on SQLite)."""
    new = make_token(tokens)
    db.session.remove()
    store = store_of(app)
    candidates = digests(app, new.secret)
    first = store.find(candidates)
    assert first is not None and first.revoked_at is None
    assert store.find(candidates) is first
    engine = sa.create_engine(str(db.engine.url.render_as_string(hide_password=False)))
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE accesstokens_token SET revoked_at = :at WHERE id = :id"),
            {"at": datetime(2030, 1, 1), "id": new.token.id},
        )
    engine.dispose()
    if db.engine.dialect.name == "postgresql":
        time.sleep(app_state(app).settings.postgresql_sync_bound.total_seconds())
    changed = store.find(candidates)
    assert changed is not None and changed is not first
    assert changed.revoked_at == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 401


# -- the pool --------------------------------------------------------------------------


def test_the_pool_is_the_stores_own(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    new = make_token(tokens)
    db.session.remove()
    app_pool = db.engine.pool
    in_app_pool = app_pool.checkedin()
    store = store_of(app)
    for _ in range(3):
        assert store.find(digests(app, new.secret)) is not None
    own = store._own_pool()
    assert own is not app_pool
    assert type(own) is type(app_pool)
    # One connection, reused: kept by the store between lookups, so a
    # lookup pays no checkout and no reset.
    assert len(store._idle) == 1 and own.checkedout() == 1
    assert app_pool.checkedin() == in_app_pool  # the app's pool lent nothing
    assert app_pool.checkedout() == 0


def test_kept_connections_are_bounded_by_the_pool_size(database_uri: str) -> None:
    """Many concurrent lookups keep no more connections between requests
    than the pool would: the rest go back, and the pool closes its overflow."""
    import threading

    app, db, tokens = make_app(
        database_uri, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 2, "max_overflow": 10}
    )
    with app.app_context():
        new = make_token(tokens)
        db.session.remove()
        store = store_of(app)
        candidates = digests(app, new.secret)
        start = threading.Barrier(6)
        found: list[bool] = []

        def lookup() -> None:
            with app.app_context():
                start.wait(timeout=10)
                for _ in range(20):
                    found.append(store.find(candidates) is not None)

        threads = [threading.Thread(target=lookup) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert found == [True] * 120
        assert 1 <= len(store._idle) <= 2
        assert store._own_pool().checkedout() == len(store._idle)
        store.dispose()
        db.engine.dispose()


def test_a_null_pool_keeps_no_connection(database_uri: str) -> None:
    """An app that chose no pooling (a PgBouncer in front, say) gets none:
    each lookup's connection is closed after it."""
    app, db, tokens = make_app(
        database_uri, SQLALCHEMY_ENGINE_OPTIONS={"poolclass": sa.pool.NullPool}
    )
    with app.app_context():
        new = make_token(tokens)
        store = store_of(app)
        for _ in range(3):
            assert store.find(digests(app, new.secret)) is not None
        assert store._idle == []
        store.dispose()
        db.session.remove()
        db.engine.dispose()


def test_in_memory_sqlite_uses_the_sessions_connection() -> None:
    """One connection for everything: a pool of its own would see another,
    empty, database."""
    app, db, tokens = make_app("sqlite://")
    with app.app_context():
        new = make_token(tokens)
        store = store_of(app)
        assert store.shared
        assert store.find(digests(app, new.secret)) is not None
        assert store._pool is None
        db.session.remove()
        db.engine.dispose()


def test_dispose_closes_the_stores_connections(app: Flask, tokens: AccessTokens) -> None:
    new = make_token(tokens)
    store = store_of(app)
    assert store.find(digests(app, new.secret)) is not None
    raw = idle_connection(store)
    assert not is_closed(raw)
    store.dispose()
    assert is_closed(raw)
    assert store._idle == []
    assert store._own_pool().checkedin() == 0
    # Disposed is not broken: the next lookup connects again.
    assert store.find(digests(app, new.secret)) is not None
    assert idle_connection(store) is not raw


@needs_postgresql
def test_dispose_ends_the_server_side_session(
    postgresql_uri: str, pg_parts: tuple[Flask, SQLAlchemy, AccessTokens]
) -> None:
    app, _, tokens = pg_parts
    new = make_token(tokens)
    store = store_of(app)
    assert store.find(digests(app, new.secret)) is not None
    pid = idle_connection(store).info.backend_pid
    assert pid in server_backends(postgresql_uri)
    store.dispose()
    assert wait_until_gone(postgresql_uri, pid)


# -- dropped without dispose() ---------------------------------------------------------


def use_and_drop(uri: str) -> tuple[weakref.ref[RequestStore], Any, int | None]:
    """An app that served a request and went away without
    ``dispose_connections()``. Its own engine is disposed (that pool is the
    app's business); nothing else. Returns a weak reference to the store, the
    store's driver connection on SQLite (a strong one: it cannot be weakly
    referenced), and the server process of the connection on PostgreSQL."""
    app, db, tokens = make_app(uri)
    with app.app_context():
        new = make_token(tokens)
        db.session.remove()
        db.engine.dispose()
    assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200
    with app.app_context():
        db.engine.dispose()  # the request's usage write went through the app's pool
    store = store_of(app)
    raw = idle_connection(store)
    if uri.startswith("sqlite"):
        return weakref.ref(store), raw, None
    return weakref.ref(store), None, raw.info.backend_pid


def test_an_app_dropped_without_dispose_closes_its_connections(database_uri: str) -> None:
    """The leak behind the flaky fuzz test: connections that no pool owned
    were garbage-collected open, whenever the collector happened to run,
    inside whichever test was running then. Here the collection runs inside a
    capture that sees every warning and every exception in ``__del__``."""
    gc.collect()  # anything earlier tests left is not this test's business
    store, raw, pid = use_and_drop(database_uri)
    with collected_garbage() as (unraisable, seen):
        pass
    assert store() is None, "the app and its store were not collected"
    assert unraisable == []
    assert [str(w.message) for w in seen] == []
    if raw is not None:
        assert is_closed(raw)
    if pid is not None:
        assert wait_until_gone(database_uri, pid)


@needs_postgresql
def test_the_capture_does_see_a_connection_collected_open() -> None:
    """The control for the test above: a psycopg connection dropped open
    is seen, so an empty capture there means none was."""
    psycopg = pytest.importorskip("psycopg")
    url = sa.engine.make_url(require_postgresql()).set(drivername="postgresql")
    with collected_garbage() as (unraisable, seen):
        conn = psycopg.connect(url.render_as_string(hide_password=False))
        conn.execute("SELECT 1")
        del conn
    assert unraisable or any(issubclass(w.category, ResourceWarning) for w in seen)


# -- fork ------------------------------------------------------------------------------


def _child(store: RequestStore, candidates: list[str], parents_pool: Any, parents_pid: Any) -> int:
    """In a forked child: look up on connections of its own, then dispose
    them and collect garbage, as a worker exiting would. Returns an exit code."""
    try:
        for _ in range(3):
            if store.find(candidates) is None:
                return 3
        if store._own_pool() is parents_pool:
            return 4
        raw = idle_connection(store)
        if parents_pid is not None and raw.info.backend_pid == parents_pid:
            return 5
        store.dispose()
        gc.collect()
        return 0
    except BaseException:  # noqa: BLE001 - the child reports by exit code only
        return 2


def test_a_forked_child_never_uses_or_closes_the_parents_connection(
    app: Flask, tokens: AccessTokens, database_uri: str
) -> None:
    new = make_token(tokens)
    store = store_of(app)
    candidates = digests(app, new.secret)
    assert store.find(candidates) is not None
    pool = store._own_pool()
    raw = idle_connection(store)
    backend = None if database_uri.startswith("sqlite") else raw.info.backend_pid

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(_child(store, candidates, pool, backend))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    # The parent's pool and connection are as they were, and still work.
    assert not is_closed(raw)
    assert store.find(candidates) is not None
    assert store._own_pool() is pool
    assert idle_connection(store) is raw
    if backend is not None:
        assert backend in server_backends(database_uri)


# -- a connection the server dropped -----------------------------------------------------


@needs_postgresql
def test_a_connection_the_server_dropped_is_replaced_once(
    postgresql_uri: str, pg_parts: tuple[Flask, SQLAlchemy, AccessTokens]
) -> None:
    """A server restart or failover ends every idle connection; the next
    request must not fail for it."""
    app, _, tokens = pg_parts
    new = make_token(tokens)
    store = store_of(app)
    candidates = digests(app, new.secret)
    assert store.find(candidates) is not None
    dropped = idle_connection(store).info.backend_pid

    admin = sa.create_engine(postgresql_uri, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            terminated = conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                                      {"pid": dropped}).scalar()  # fmt: skip
        assert terminated is True
    finally:
        admin.dispose()
    assert wait_until_gone(postgresql_uri, dropped)

    row = store.find(candidates)
    assert row is not None and row.id == new.token.id
    assert idle_connection(store).info.backend_pid != dropped
    assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 200


# -- FailureCounter --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("flask_accesstokens.storewrites.time", fake)
    return fake


KEY = ("unknown", None, "203.0.113.9")


def test_a_key_is_written_at_most_once_per_interval(clock: Clock) -> None:
    counter = FailureCounter(60)
    assert counter.add(KEY) == (KEY, 1)
    for _ in range(4):
        clock.now += 10
        assert counter.add(KEY) == (KEY, 0)
    clock.now += 20  # 60 s after the first write
    assert counter.add(KEY) == (KEY, 5)  # the four held back, and this one
    assert counter.add(KEY) == (KEY, 0)


def test_keys_are_counted_apart(clock: Clock) -> None:
    counter = FailureCounter(60)
    other = ("unknown", None, "198.51.100.1")
    assert counter.add(KEY) == (KEY, 1)
    assert counter.add(other) == (other, 1)
    assert counter.add(("malformed", None, "203.0.113.9"))[1] == 1


def test_writes_per_interval_are_bounded_in_all(clock: Clock) -> None:
    """Garbage from ever-changing addresses is not one INSERT per request."""
    counter = FailureCounter(60)
    due = [counter.add(("unknown", None, f"10.0.0.{i}"))[1] for i in range(100)]
    assert sum(1 for d in due if d) == FailureCounter.WRITES_PER_INTERVAL
    assert due[FailureCounter.WRITES_PER_INTERVAL :] == [0] * 40
    clock.now += 60
    # A held-back key is written in the next interval, with its count.
    assert counter.add(("unknown", None, "10.0.0.99")) == (("unknown", None, "10.0.0.99"), 2)


def test_past_max_keys_new_keys_fold_into_one_per_reason(clock: Clock) -> None:
    counter = FailureCounter(60)
    counter.MAX_KEYS = 3
    for i in range(3):
        counter.add(("unknown", None, f"10.0.0.{i}"))
        counter.add(("unknown", None, f"10.0.0.{i}"))  # each has a count held back
    key, due = counter.add(("unknown", None, "10.0.0.200"))
    assert key == ("unknown", None, None)
    key, _ = counter.add(("expired", "token id", "10.0.0.201"))
    assert key == ("expired", None, None)
    assert len(counter._pending) <= counter.MAX_KEYS + 2  # the folded keys, one per reason


def test_quiet_keys_are_forgotten_before_any_folding(clock: Clock) -> None:
    counter = FailureCounter(60)
    counter.MAX_KEYS = 3
    for i in range(3):
        counter.add(("unknown", None, f"10.0.0.{i}"))  # written at once: nothing held back
    clock.now += 61
    new = ("unknown", None, "10.0.0.200")
    assert counter.add(new) == (new, 1)
    assert set(counter._pending) == {new}


# -- SQLite's remembered rows ----------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Any) -> str:
    return str(tmp_path / "cache.sqlite")


@pytest.fixture
def sqlite_parts(sqlite_file: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    parts = make_app(f"sqlite:///{sqlite_file}")
    with parts[0].app_context():
        yield parts
        parts[1].session.remove()
        AccessTokens.dispose_connections()
        parts[1].engine.dispose()


def test_sqlite_rows_are_remembered_until_another_connection_commits(
    sqlite_parts: tuple[Flask, SQLAlchemy, AccessTokens], sqlite_file: str
) -> None:
    app, _, tokens = sqlite_parts
    new = make_token(tokens)
    store = store_of(app)
    candidates = digests(app, new.secret)
    first = store.find(candidates)
    assert first is not None
    assert store.find(candidates) is first  # remembered: nobody committed

    # Any commit, by any connection, even to another table, forgets them.
    other = sqlite3.connect(sqlite_file)
    try:
        with other:
            other.execute("INSERT INTO accesstokens_event (at, action, count) "
                          "VALUES ('2030-01-01 00:00:00', 'test', 1)")  # fmt: skip
    finally:
        other.close()
    second = store.find(candidates)
    assert second == first and second is not first

    # A revocation through the app is seen on the next lookup.
    tokens.revoke_token(new.token.id)
    revoked = store.find(candidates)
    assert revoked is not None and revoked.revoked_at is not None
    assert app.test_client().get(REPO, headers=bearer(new.secret)).status_code == 401


def test_sqlite_does_not_remember_unknown_digests(
    sqlite_parts: tuple[Flask, SQLAlchemy, AccessTokens],
) -> None:
    """A flood of garbage must not fill the memory of a connection."""
    app, _, tokens = sqlite_parts
    make_token(tokens)
    store = store_of(app)
    for i in range(50):
        assert store.find([f"{i:064x}"]) is None
    assert store._cache[1] == {}  # rows kept under the file's commit stamp
    fairy = store._own_pool().connect()
    try:
        assert not fairy.info.get("accesstokens.rows")  # rows kept per connection
    finally:
        fairy.close()
