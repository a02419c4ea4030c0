"""Many processes on one PostgreSQL: gunicorn with four workers under a
bounded load from another process, revocation in the middle of it, token
creation racing across processes, and ``last_used_at`` written by whichever
worker gets there first."""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
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
from wsgi_app import DATABASE_VARIABLE
from wsgi_app import RESOLUTION_VARIABLE

from flask_accesstokens import AccessTokens

pytestmark = needs_postgresql

TESTS = Path(__file__).parent
WORKERS = 4
REPO = "/repositories/acme/api"


@dataclass
class Host:
    """The test's own app on the shared schema: it creates and revokes."""

    url: str
    app: Flask
    db: SQLAlchemy
    tokens: AccessTokens

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()


@pytest.fixture
def host() -> Iterator[Host]:
    with fresh_schema(require_postgresql()) as url:
        app, db, tokens = make_app(url)  # creates the tables before any worker starts
        with app.app_context():
            yield Host(url, app, db, tokens)
            AccessTokens.dispose_connections()
            db.session.remove()
            db.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(url: str, log: Path, resolution: float = 60) -> Iterator[int]:
    """Four sync workers on a free loopback port; stopped by PID."""
    port = _free_port()
    env = dict(os.environ)
    env[DATABASE_VARIABLE] = url
    env[RESOLUTION_VARIABLE] = str(resolution)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
            + ["--chdir", str(TESTS), "--graceful-timeout", "5", "wsgi_app:create_app()"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not start\n" + log.read_text()
            if log.read_text().count("Booting worker") >= WORKERS and _answers(port):
                break
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _answers(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/anything")
        return conn.getresponse().status == 401
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class Sample:
    sent: float
    header: int
    status: int


@contextmanager
def load(
    port: int, headers: list[str], out: Path, seconds: float, max_requests: int = 20_000
) -> Iterator[list[Sample]]:
    """Start the load client; yield once it runs; on exit wait for it to
    finish and fill in the samples."""
    env = dict(os.environ, LOADCLIENT_AUTHORIZATION="\n".join(headers))
    process = subprocess.Popen(
        [sys.executable, str(TESTS / "loadclient.py"), str(port), REPO]
        + ["--threads", "4", "--seconds", str(seconds)]
        + ["--max-requests", str(max_requests), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    samples: list[Sample] = []
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready and process.stdout.readline().strip() == "started"
        yield samples
        process.wait(timeout=seconds + 60)
        assert process.returncode == 0
        for line in out.read_text().splitlines():
            samples.append(Sample(**json.loads(line)))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def _rate(samples: list[Sample], start: float, end: float) -> float:
    inside = [s for s in samples if start <= s.sent < end]
    return len(inside) / (end - start) if end > start else 0.0


def test_revocation_mid_load_holds_for_every_worker(
    host: Host, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ``revoke_token`` returns, no worker accepts the token: every
    request sent from then on is refused. Another token keeps working."""
    doomed = host.tokens.create_token(
        name="doomed", workspace="acme", repository="api", scopes=["repository"]
    )
    other = host.tokens.create_token(
        name="other", workspace="acme", repository="api", scopes=["repository"]
    )
    headers = [bearer(doomed.secret)["Authorization"], bearer(other.secret)["Authorization"]]

    with gunicorn(host.url, tmp_path / "gunicorn.log") as port:
        with load(port, headers, tmp_path / "load.jsonl", seconds=4) as samples:
            started = time.monotonic()
            time.sleep(1.5)
            host.tokens.revoke_token(doomed.token.id, revoked_by="alice")
            revoked = time.monotonic()
        finished = max(s.sent for s in samples)

    doomed_before = [s for s in samples if s.header == 0 and s.sent < started + 1]
    doomed_after = [s for s in samples if s.header == 0 and s.sent > revoked]
    others = [s for s in samples if s.header == 1]
    assert doomed_before and {s.status for s in doomed_before} == {200}
    assert len(doomed_after) >= 20, "too little load after the revocation to show anything"
    accepted = [s for s in doomed_after if s.status != 401]
    assert accepted == [], f"{len(accepted)} requests accepted after revoke_token returned"
    assert {s.status for s in others} == {200}

    before = _rate(samples, started, revoked)
    after = _rate(samples, revoked, finished)
    with capsys.disabled():
        print(
            f"\n[multiworker] gunicorn -w {WORKERS}, PostgreSQL: {len(samples)} requests; "
            f"{before:.0f} req/s before revoke_token, {after:.0f} req/s after; "
            f"{len(doomed_after)} requests with the revoked token after it returned, all 401"
        )


def _create_many(url: str, barrier: Any, results: Any, count: int) -> None:
    """One process: its own app and engine, ``count`` tokens, as fast as it can."""
    app, db, tokens = make_app(url)
    made = []
    with app.app_context():
        barrier.wait(timeout=60)
        for n in range(count):
            new = tokens.create_token(
                name=f"token {os.getpid()} {n}",
                workspace="acme",
                repository="api",
                scopes=["repository"],
            )
            made.append((new.token.id, new.secret))
        db.engine.dispose()
    results.put(made)


def test_concurrent_creation_across_processes(host: Host) -> None:
    processes, each = 4, 250
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_create_many, args=(host.url, barrier, results, each))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        made = [pair for _ in workers for pair in results.get(timeout=120)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * processes

    total = processes * each
    ids = {token_id for token_id, _ in made}
    assert len(made) == total
    assert len(ids) == total
    assert len({secret for _, secret in made}) == total
    assert host.scalar("SELECT count(*) FROM accesstokens_token") == total
    assert host.scalar("SELECT count(DISTINCT id) FROM accesstokens_token") == total
    assert host.scalar("SELECT count(DISTINCT digest) FROM accesstokens_secret") == total
    assert host.scalar("SELECT count(DISTINCT token_id) FROM accesstokens_secret") == total
    assert host.scalar("SELECT count(*) FROM accesstokens_event WHERE action = 'created'") == total
    stored = {
        row.id for row in host.db.session.execute(sa.text("SELECT id FROM accesstokens_token"))
    }
    assert stored == ids
    # Every secret handed out works, and works as its own token.
    client = host.app.test_client()
    for token_id, secret in made:
        response = client.get(REPO, headers=bearer(secret))
        assert response.status_code == 200
        assert response.json is not None and response.json["token"] == token_id


TOUCH_LOG = """
CREATE TABLE touch_log (last_used_at timestamp NOT NULL);
CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO touch_log VALUES (NEW.last_used_at);
    RETURN NEW;
END $$;
CREATE TRIGGER touch_log AFTER UPDATE OF last_used_at ON accesstokens_token
    FOR EACH ROW EXECUTE FUNCTION log_touch();
"""


def test_last_used_at_under_concurrent_use_of_one_token(
    host: Host, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four workers hammer one token. ``last_used_at`` is written by
    whichever gets there first, at most once per resolution: every row
    update the database actually made is counted by a trigger."""
    resolution = 0.5
    seconds = 3.0
    new = host.tokens.create_token(
        name="busy", workspace="acme", repository="api", scopes=["repository"]
    )
    with host.db.engine.begin() as conn:
        conn.exec_driver_sql(TOUCH_LOG)

    log = tmp_path / "gunicorn.log"
    with gunicorn(host.url, log, resolution=resolution) as port:
        with load(port, [bearer(new.secret)["Authorization"]], tmp_path / "load.jsonl", seconds):
            pass
        samples: list[Sample] = []
        for line in (tmp_path / "load.jsonl").read_text().splitlines():
            samples.append(Sample(**json.loads(line)))

    assert len(samples) >= 100
    assert {s.status for s in samples} == {200}
    output = log.read_text()
    for trouble in ("could not record use", "deadlock", "Traceback", "Error"):
        assert trouble not in output, output

    with host.db.engine.connect() as conn:
        writes = [row[0] for row in conn.execute(sa.text("SELECT last_used_at FROM touch_log"))]
    writes.sort()
    span = max(s.sent for s in samples) - min(s.sent for s in samples)
    windows = int(span / resolution) + 1
    assert 2 <= len(writes) <= WORKERS * windows
    # Stronger than the bound: each write moved the time on by a full resolution.
    gaps = [b - a for a, b in zip(writes, writes[1:], strict=False)]
    assert all(gap >= timedelta(seconds=resolution) for gap in gaps), gaps
    assert len(writes) <= windows + 1
    with capsys.disabled():
        print(
            f"\n[multiworker] one token, {len(samples)} requests over {span:.1f}s on "
            f"{WORKERS} workers: {len(writes)} last_used_at writes "
            f"(resolution {resolution}s, bound {WORKERS * windows})"
        )
