"""The PostgreSQL row cache under faults, with gunicorn's four workers under
load from another process: listener backends killed with
``pg_terminate_backend`` mid-run, the database restarted (a cluster of the
test's own), pgbouncer in transaction mode (where ``LISTEN`` cannot hold),
and changes made by every kind of call and by plain SQL.

In each: no request sent after the revoking call returned (or, for plain SQL,
after the bound passed since the commit) is accepted, the valid token works
again by itself, and nothing answers 500.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import bearer
from helpers import make_app
from pgservers import own_cluster
from pgservers import pgbouncer
from services import fresh_schema
from services import needs_postgresql
from services import require_postgresql
from services import schema_of
from test_multiworker import gunicorn
from test_multiworker import Host
from test_multiworker import load
from test_multiworker import Sample
from wsgi_app import NO_PREPARE_VARIABLE

from flask_accesstokens import AccessTokens

pytestmark = needs_postgresql

BOUND = 0.25  # the default


def _host(url: str) -> Host:
    app, db, tokens = make_app(url)
    return Host(url, app, db, tokens)


def _close(host: Host) -> None:
    AccessTokens.dispose_connections(host.app)
    host.db.session.remove()
    host.db.engine.dispose()


def _run(
    host: Host,
    worker_url: str,
    tmp_path: Path,
    fault: Callable[[], None] | None,
    seconds: float = 7,
) -> None:
    """Load two tokens; at 1.5 s the fault; at 3 s revoke one. Checks the
    promise, recovery and the absence of 500."""
    doomed = host.tokens.create_token(
        name="doomed", workspace="acme", repository="api", scopes=["repository"]
    )
    other = host.tokens.create_token(
        name="other", workspace="acme", repository="api", scopes=["repository"]
    )
    headers = [bearer(doomed.secret)["Authorization"], bearer(other.secret)["Authorization"]]
    with gunicorn(worker_url, tmp_path / "gunicorn.log") as port:
        with load(port, headers, tmp_path / "load.jsonl", seconds=seconds) as samples:
            started = time.monotonic()
            time.sleep(1.5)
            if fault is not None:
                fault()
            time.sleep(max(0.0, started + 3 - time.monotonic()))
            revoke_with_retry(host, doomed.token.id)
            revoked = time.monotonic()
    _check(samples, started, revoked, seconds)


def revoke_with_retry(host: Host, token_id: str) -> None:
    """The operator's revocation; retried while the database comes back."""
    deadline = time.monotonic() + 10
    while True:
        try:
            host.tokens.revoke_token(token_id, revoked_by="alice")
            return
        except sa.exc.OperationalError:
            host.db.session.rollback()
            host.db.engine.dispose()
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _check(samples: list[Sample], started: float, revoked: float, seconds: float) -> None:
    statuses = {s.status for s in samples}
    assert 500 not in statuses and 0 not in statuses, statuses
    after = [s for s in samples if s.header == 0 and s.sent > revoked]
    assert len(after) >= 20, "too little load after the revocation to show anything"
    accepted = [s for s in after if s.status != 401]
    assert accepted == [], f"{len(accepted)} requests accepted after revoke_token returned"
    # The valid token works again by itself: its last second is all 200.
    end = started + seconds
    last = [s for s in samples if s.header == 1 and s.sent > end - 1]
    assert last and {s.status for s in last} == {200}, {s.status for s in last}


def test_listener_backends_killed_mid_run(tmp_path: Path) -> None:
    with fresh_schema(require_postgresql()) as url:
        host = _host(url)
        stop = threading.Event()

        def kill_listeners() -> None:
            while not stop.is_set():
                with host.app.app_context():
                    host.scalar(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'accesstokens-listener' "
                        "AND usename = current_user AND pid <> pg_backend_pid()"
                    )
                stop.wait(0.3)

        killer = threading.Thread(target=kill_listeners)
        with host.app.app_context():
            try:
                _run(host, url, tmp_path, fault=killer.start)
            finally:
                stop.set()
                if killer.is_alive():
                    killer.join()
                _close(host)


def test_database_restarted_mid_run(tmp_path: Path) -> None:
    with own_cluster() as cluster:
        host = _host(cluster.url)

        def restart() -> None:
            cluster.stop()
            time.sleep(0.5)
            cluster.start()
            host.db.engine.dispose()

        with host.app.app_context():
            try:
                _run(host, cluster.url, tmp_path, fault=restart, seconds=12)
            finally:
                _close(host)


def test_pgbouncer_in_transaction_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_PREPARE_VARIABLE, "1")
    with fresh_schema(require_postgresql()) as url:
        host = _host(url)  # the tables, made directly
        with host.app.app_context():
            try:
                with pgbouncer(url, schema_of(url)) as pooled:
                    _run(host, pooled, tmp_path, fault=None)
            finally:
                _close(host)


def test_plain_sql_and_public_revocation_under_load(tmp_path: Path) -> None:
    """Three tokens under load: one revoked with plain SQL, one deleted with
    plain SQL, one through public revocation over HTTP. Plain SQL holds once
    the bound has passed since its commit; the HTTP call when it returns."""
    with fresh_schema(require_postgresql()) as url:
        host = _host(url)
        with host.app.app_context():
            try:
                made = [
                    host.tokens.create_token(
                        name=f"t{i}", workspace="acme", repository="api", scopes=["repository"]
                    )
                    for i in range(4)
                ]
                headers = [bearer(m.secret)["Authorization"] for m in made]
                with gunicorn(url, tmp_path / "gunicorn.log") as port:
                    with load(port, headers, tmp_path / "load.jsonl", seconds=5) as samples:
                        time.sleep(1.5)
                        with host.db.engine.begin() as conn:
                            conn.execute(
                                sa.text(
                                    "UPDATE accesstokens_token SET revoked_at = now() "
                                    "WHERE id = :id"
                                ),
                                {"id": made[0].token.id},
                            )
                        updated = time.monotonic() + BOUND
                        with host.db.engine.begin() as conn:
                            conn.execute(
                                sa.text("DELETE FROM accesstokens_secret WHERE token_id = :id"),
                                {"id": made[1].token.id},
                            )
                        deleted = time.monotonic() + BOUND
                        import http.client

                        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                        client.request(
                            "POST",
                            "/api/access-tokens/revoke",
                            body=f'{{"access_tokens": ["{made[2].secret}"]}}',
                            headers={"Content-Type": "application/json"},
                        )
                        assert client.getresponse().status == 202
                        client.close()
                        public = time.monotonic()
                assert 500 not in {s.status for s in samples}
                for which, since in ((0, updated), (1, deleted), (2, public)):
                    after = [s for s in samples if s.header == which and s.sent > since]
                    assert len(after) >= 10
                    assert {s.status for s in after} == {401}, which
                assert {s.status for s in samples if s.header == 3} == {200}
            finally:
                _close(host)


@pytest.mark.slow
def test_revocation_mid_load_long(tmp_path: Path) -> None:
    """The larger budget: thirty seconds of load, a revocation every few."""
    with fresh_schema(require_postgresql()) as url:
        host = _host(url)
        with host.app.app_context():
            try:
                made = [
                    host.tokens.create_token(
                        name=f"t{i}", workspace="acme", repository="api", scopes=["repository"]
                    )
                    for i in range(6)
                ]
                headers = [bearer(m.secret)["Authorization"] for m in made]
                revoked: list[float] = []
                with gunicorn(url, tmp_path / "gunicorn.log") as port:
                    with load(
                        port, headers, tmp_path / "load.jsonl", seconds=30, max_requests=200_000
                    ) as samples:
                        for m in made[:5]:
                            time.sleep(5)
                            host.tokens.revoke_token(m.token.id)
                            revoked.append(time.monotonic())
                assert 500 not in {s.status for s in samples}
                for which, since in enumerate(revoked):
                    after = [s for s in samples if s.header == which and s.sent > since]
                    assert after and {s.status for s in after} == {401}
                assert {s.status for s in samples if s.header == 5} == {200}
            finally:
                _close(host)
