"""``ACCESSTOKENS_READ_DATABASE_URI``: lookups read a hot standby only under
revocation's promise, against a real streaming replica (``.ci/standby.sh``:
two local clusters, ``pg_basebackup``, one synchronous standby with
``synchronous_commit = remote_apply``).

Which server answered is observed on the servers themselves: the lookup
statement is the last query of a session of ours in the standby's
``pg_stat_activity``. Every refusal is observed over the app's HTTP surface.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from helpers import bearer
from helpers import make_app
from services import fresh_schema
from services import require_standby
from services import schema_of
from services import with_options
from services import with_port
from sqlalchemy.engine import make_url

from flask_accesstokens import AccessTokens
from flask_accesstokens.config import load
from flask_accesstokens.errors import ConfigurationError
from flask_accesstokens.models import SECRETS
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.standby import application_name
from flask_accesstokens.standby import Standby
from flask_accesstokens.tokenformat import generate

REPO = "/repositories/acme/api"
STANDBY_NAME = "accesstokens_standby"


def _dbapi(url: str) -> psycopg.Connection[Any]:
    parsed = make_url(url)
    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
    )


def _scalar(url: str, sql: str, *params: Any) -> Any:
    with _dbapi(url) as conn:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]


@dataclass
class Pair:
    primary: str
    standby: str
    primary_admin: str
    standby_admin: str

    def lookups_on_standby(self, name: str) -> int:
        """Sessions named ``name`` on the standby whose last statement was a
        lookup."""
        return int(
            _scalar(
                self.standby_admin,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                " AND query LIKE %s",
                name,
                f"%FROM {SECRETS.name} JOIN%",
            )
        )

    @contextmanager
    def primary_settings(self, **settings: str) -> Iterator[None]:
        """Change the primary's replication settings for a test, and put
        back the synchronous standby with remote_apply after it."""
        try:
            self._set(settings)
            yield
        finally:
            self._set(
                {
                    "synchronous_standby_names": f"FIRST 1 ({STANDBY_NAME})",
                    "synchronous_commit": "remote_apply",
                }
            )
            self._wait_for_state("sync")

    def _set(self, settings: dict[str, str]) -> None:
        with _dbapi(self.primary_admin) as conn:
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        for name, value in settings.items():
            while _scalar(self.primary, f"SELECT current_setting('{name}')") != value:
                assert time.monotonic() < deadline, f"{name} was not reloaded"
                time.sleep(0.05)

    def _wait_for_state(self, state: str) -> None:
        deadline = time.monotonic() + 10
        sql = "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s"
        while _scalar(self.primary_admin, sql, STANDBY_NAME) != state:
            assert time.monotonic() < deadline, f"the standby never became {state}"
            time.sleep(0.05)


@pytest.fixture
def pair() -> Pair:
    return Pair(*require_standby())


@dataclass
class Rig:
    app: Flask
    db: Any
    tokens: AccessTokens
    url: str
    #: The application name of this rig's standby sessions.
    name: str

    def get(self, secret: str) -> int:
        return int(self.app.test_client().get(REPO, headers=bearer(secret)).status_code)

    def new(self, **fields: Any) -> Any:
        values: dict[str, Any] = {
            "name": "CI",
            "workspace": "acme",
            "repository": "api",
            "scopes": ["repository"],
        }
        values.update(fields)
        return self.tokens.create_token(**values)

    @property
    def standby(self) -> Standby:
        standby = Pipeline.of(self.app).store._standby
        assert isinstance(standby, Standby)
        return standby


@contextmanager
def rig_on(pair: Pair, read: str | None = None, **config: Any) -> Iterator[Rig]:
    with fresh_schema(pair.primary) as url:
        if read is None:
            read = with_options(pair.standby, search_path=schema_of(url))
        name = f"rig_{uuid.uuid4().hex[:12]}"
        read = make_url(read).update_query_dict({"application_name": name})
        config.setdefault("ACCESSTOKENS_POSTGRESQL_SYNC_BOUND", 0.2)
        app, db, tokens = make_app(url, ACCESSTOKENS_READ_DATABASE_URI=read, **config)
        with app.app_context():
            try:
                yield Rig(app, db, tokens, url, name)
            finally:
                AccessTokens.dispose_connections()
                db.session.remove()
                db.engine.dispose()


CACHE = pytest.mark.parametrize("cache", [True, False], ids=["cache on", "cache off"])


@CACHE
def test_lookups_read_the_synchronous_standby(pair: Pair, cache: bool) -> None:
    with rig_on(pair, ACCESSTOKENS_POSTGRESQL_CACHE=cache) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.standby.reason is None
        # With the cache on, a miss reads the standby once the listener has
        # synced since its last notification (the first use's write).
        deadline = time.monotonic() + 3
        while pair.lookups_on_standby(rig.name) == 0:
            assert time.monotonic() < deadline, "no lookup read the standby"
            assert rig.get(generate("bbat")) == 401  # unknown, well formed
            time.sleep(0.02)
        assert rig.get(new.secret) == 200


def test_a_revoke_returns_only_once_the_standby_has_applied_it(pair: Pair) -> None:
    """Replay paused on the standby: the revoke waits, the standby still
    serves the old row to requests that started before it returned, and the
    first request after it returns is refused."""
    with rig_on(pair, ACCESSTOKENS_POSTGRESQL_CACHE=False) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert pair.lookups_on_standby(rig.name) == 1  # the standby answers
        app = rig.app
        returned = threading.Event()

        def revoke() -> None:
            with app.app_context():
                rig.tokens.revoke_token(new.token.id, revoked_by="alice")
            returned.set()

        with _dbapi(pair.standby_admin) as standby:
            standby.execute("SELECT pg_wal_replay_pause()")
            try:
                worker = threading.Thread(target=revoke)
                worker.start()
                assert not returned.wait(1.0), "revoke returned before the standby applied it"
                assert rig.get(new.secret) == 200  # started before it returned
            finally:
                standby.execute("SELECT pg_wal_replay_resume()")
        assert returned.wait(10)
        worker.join(5)
        assert rig.get(new.secret) == 401
        assert rig.standby.reason is None


@CACHE
@pytest.mark.parametrize("call", ["revoke_token", "revoke_resource_tokens", "rotate_token"])
def test_no_request_after_a_revoking_call_returns_is_accepted(
    pair: Pair, cache: bool, call: str
) -> None:
    """Requests run without pause from other threads; every one sent after
    the call returned is refused."""
    with rig_on(pair, ACCESSTOKENS_POSTGRESQL_CACHE=cache) as rig:
        new = rig.new()
        for _ in range(3):
            assert rig.get(new.secret) == 200  # read, and kept with the cache on
        samples: list[tuple[float, float, int]] = []  # sent, answered, status
        stop = threading.Event()

        def hammer() -> None:
            with rig.app.app_context():
                while not stop.is_set():
                    sent = time.monotonic()
                    status = rig.get(new.secret)
                    samples.append((sent, time.monotonic(), status))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        calling = time.monotonic()
        if call == "revoke_token":
            rig.tokens.revoke_token(new.token.id, revoked_by="alice")
        elif call == "revoke_resource_tokens":
            assert rig.tokens.revoke_resource_tokens("acme", repository="api") == 1
        else:
            assert rig.tokens.rotate_token(new.token.id, "alice", grace=None) is not None
        returned = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(10)
        before = [status for _, answered, status in samples if answered < calling]
        after = [status for sent, _, status in samples if sent > returned]
        assert before and set(before) == {200}
        assert len(after) >= 5
        assert set(after) == {401}, f"{after.count(200)} accepted after {call} returned"
        assert rig.standby.reason is None


@contextmanager
def replay_paused(pair: Pair) -> Iterator[None]:
    """The standby receives WAL but applies none of it: it lags."""
    with _dbapi(pair.standby_admin) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")


def test_a_change_the_standby_has_not_replayed_is_read_on_the_primary(pair: Pair) -> None:
    """Plain SQL that does not wait for the standby (``synchronous_commit =
    local``) while it lags: with the row cache on, a lookup goes to the
    standby only once it has replayed every change the listener heard of,
    so the revocation holds after the bound all the same."""
    with rig_on(pair) as rig:
        new, other = rig.new(), rig.new(name="other")
        for _ in range(3):
            assert rig.get(new.secret) == 200
        with replay_paused(pair):
            with rig.db.engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL synchronous_commit = local"))
                conn.execute(
                    sa.text("UPDATE accesstokens_token SET revoked_at = now() WHERE id = :id"),
                    {"id": new.token.id},
                )
            time.sleep(0.3)
            assert rig.get(new.secret) == 401
            assert rig.get(other.secret) == 200  # unknown to the lagging standby: the primary
        deadline = time.monotonic() + 5
        while pair.lookups_on_standby(rig.name) == 0 or rig.get(new.secret) != 401:
            assert time.monotonic() < deadline, "the standby was never read again"
            assert rig.get(rig.new().secret) == 200
            time.sleep(0.05)


def test_a_standby_that_turns_asynchronous_after_the_check_is_not_trusted(pair: Pair) -> None:
    """The check passed; then the standby stops being synchronous and lags.
    A revocation returns without waiting for it, and is honoured anyway."""
    with rig_on(pair) as rig:
        new = rig.new()
        for _ in range(3):
            assert rig.get(new.secret) == 200
        assert rig.standby.reason is None
        with pair.primary_settings(synchronous_standby_names=""), replay_paused(pair):
            rig.tokens.revoke_token(new.token.id, revoked_by="alice")
            assert rig.get(new.secret) == 401
            assert rig.standby.reason is None  # the check has not run again yet


def test_a_standby_showing_other_tables_is_not_read(pair: Pair) -> None:
    with rig_on(pair, read=with_options(pair.standby, search_path="nowhere")) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.standby.reason is not None
        assert "database and tables" in rig.standby.reason


def test_a_plain_sql_revocation_is_honoured_after_the_bound(pair: Pair) -> None:
    with rig_on(pair) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.get(new.secret) == 200
        with rig.db.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE accesstokens_token SET revoked_at = now() WHERE id = :id"),
                {"id": new.token.id},
            )
        time.sleep(0.2)
        assert rig.get(new.secret) == 401


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"synchronous_standby_names": ""}, "sync_state: async"),
        ({"synchronous_standby_names": f"ANY 1 ({STANDBY_NAME}, other)"}, "sync_state: quorum"),
        ({"synchronous_commit": "on"}, "not 'remote_apply'"),
    ],
    ids=["asynchronous", "quorum", "commit on"],
)
def test_a_standby_without_the_promise_is_not_read(
    pair: Pair, settings: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An asynchronous standby, a quorum member, or commits that do not wait
    for remote_apply: lookups go to the primary, revocation holds, and the
    log says why."""
    with pair.primary_settings(**settings), rig_on(pair) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.standby.reason is not None and reason in rig.standby.reason
        assert pair.lookups_on_standby(rig.name) == 0
        rig.tokens.revoke_token(new.token.id)
        assert rig.get(new.secret) == 401
        assert any("not the standby" in r.getMessage() for r in caplog.records)


def test_the_primary_itself_is_not_a_standby(pair: Pair) -> None:
    with fresh_schema(pair.primary) as url:
        with rig_on(pair, read=url) as rig:
            new = rig.new()
            assert rig.get(new.secret) == 200
            assert rig.standby.reason == "it is not a standby (pg_is_in_recovery() is false)"


def test_an_unreachable_standby_leaves_lookups_to_the_primary(pair: Pair) -> None:
    with rig_on(pair, read=with_port(pair.standby, 1)) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.standby.reason is not None and "cannot be checked" in rig.standby.reason
        rig.tokens.revoke_token(new.token.id)
        assert rig.get(new.secret) == 401


def test_a_standby_connection_killed_mid_run_fails_over_to_the_primary(pair: Pair) -> None:
    with rig_on(pair, ACCESSTOKENS_POSTGRESQL_CACHE=False) as rig:
        new = rig.new()
        assert rig.get(new.secret) == 200
        assert rig.standby.reason is None
        killed = _scalar(
            pair.standby_admin,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            rig.name,
        )
        assert killed >= 1
        assert rig.get(new.secret) == 200  # answered by the primary
        assert rig.standby.reason is not None and "lookup failed" in rig.standby.reason


def test_dispose_connections_closes_the_standby_sessions(pair: Pair) -> None:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    with rig_on(pair, ACCESSTOKENS_POSTGRESQL_CACHE=False) as rig:
        assert rig.get(rig.new().secret) == 200
        assert _scalar(pair.standby_admin, sql, rig.name) >= 1
        AccessTokens.dispose_connections()
        deadline = time.monotonic() + 5
        while _scalar(pair.standby_admin, sql, rig.name):
            assert time.monotonic() < deadline, "standby sessions left open"
            time.sleep(0.05)


def test_every_worker_refuses_after_revoke_returns(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn, four workers reading the standby with the cache on."""
    from test_multiworker import gunicorn
    from test_multiworker import load
    from wsgi_app import READ_VARIABLE

    with rig_on(pair) as rig:
        read = with_options(pair.standby, search_path=schema_of(rig.url))
        read = make_url(read).update_query_dict({"application_name": rig.name})
        monkeypatch.setenv(READ_VARIABLE, read.render_as_string(hide_password=False))
        doomed, other = rig.new(name="doomed"), rig.new(name="other")
        # A third client sends an unknown token: every lookup a miss, read
        # on the standby once a worker's listener has synced.
        headers = [bearer(t)["Authorization"] for t in (doomed.secret, other.secret)]
        headers.append(bearer(generate("bbat"))["Authorization"])
        with gunicorn(rig.url, tmp_path / "gunicorn.log") as port:
            with load(port, headers, tmp_path / "load.jsonl", seconds=3) as samples:
                time.sleep(1.2)
                rig.tokens.revoke_token(doomed.token.id, revoked_by="alice")
                revoked = time.monotonic()
            # The workers' sessions on the standby, the lookup their last statement.
            assert pair.lookups_on_standby(rig.name) >= 1
        after = [s for s in samples if s.header == 0 and s.sent > revoked]
        assert len(after) >= 20
        assert {s.status for s in after} == {401}
        assert {s.status for s in samples if s.header == 1} == {200}
        assert {s.status for s in samples if s.header == 2} == {401}


def test_a_read_uri_beside_sqlite_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, db, tokens = make_app(
        f"sqlite:///{tmp_path / 'app.db'}",
        ACCESSTOKENS_READ_DATABASE_URI="postgresql+psycopg://u:p@127.0.0.1:1/db",
    )
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        client = app.test_client()
        assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
        assert any("READ_DATABASE_URI ignored" in r.getMessage() for r in caplog.records)
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_the_walreceivers_application_name() -> None:
    assert application_name("host=a application_name=one port=1", "") == "one"
    assert application_name("host=a fallback_application_name=walreceiver", "c") == "walreceiver"
    assert application_name("host=a", "cluster") == "cluster"
    assert application_name("host=a", "") == "walreceiver"


@pytest.mark.parametrize(
    "value",
    ["sqlite:///x.db", "not a url", 42, "postgresql://u@a,b/db", "postgresql:///db?host=a&host=b"],
)
def test_the_read_uri_must_be_postgresql(value: object) -> None:
    config = {"SECRET_KEY": "k", "ACCESSTOKENS_READ_DATABASE_URI": value}
    with pytest.raises(ConfigurationError, match="ACCESSTOKENS_READ_DATABASE_URI"):
        load(config)
    config["ACCESSTOKENS_READ_DATABASE_URI"] = "postgresql+psycopg://u:pw-XYZ123@standby/db"
    settings = load(config)
    assert settings.read_database_uri == make_url("postgresql+psycopg://u:pw-XYZ123@standby/db")
    assert "pw-XYZ123" not in repr(settings)
