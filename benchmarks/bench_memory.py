"""A worker's resident memory with 1M tokens on PostgreSQL, and how it grows
with the number of warm tokens. Every per-token structure a worker keeps (the
row cache's rows, ``MAX_ROWS`` in ``flask_accesstokens/pgchange.py``, and the
decoded rows, built tokens and usage it remembers) is capped, so past the cap
the growth must stop. A tracemalloc count of one structure misses the others
and what the allocator holds (slack, freed memory not given back), so this
reads ``VmRSS`` from ``/proc/<worker pid>/status`` of a real gunicorn worker.

Run::

    .venv/bin/python benchmarks/bench_memory.py --postgresql postgresql+psycopg://...

The tables go in a schema of their own (``bench_memory``, dropped after):
filler tokens made by the server (``bench_http.bulk_load_server_side``) plus
the largest ``--warm`` count of tokens with known secrets, ``--tokens`` in
all. One gunicorn worker serves ``http_app.py``'s protected route, with the
row cache on, then off; each step requests each of the next tokens once and
then reads the worker's RSS and how many rows its cache keeps.

Warm means in steady use: a token's first use from a new client writes its
last use, and the write's notification drops its row. So before a chunk of
tokens is requested, one statement marks them used just now from this client
(as another worker's write would), and their one request each writes
nothing and keeps the row. The kept-rows column shows it did.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_http import prepare  # noqa: E402
from bench_http import serving  # noqa: E402
from pgschema import own_schema  # noqa: E402

from flask_accesstokens.pgchange import MAX_ROWS  # noqa: E402


def create_app() -> Any:
    """``http_app``'s app, plus ``/kept``: the worker's PID and how many rows
    its cache holds, so the table can show the bound being reached."""
    from flask import jsonify
    from http_app import create_app as http_app

    from flask_accesstokens.pgchange import PgChange
    from flask_accesstokens.pipeline import Pipeline

    app = http_app()

    @app.get("/kept")
    def kept() -> Any:
        pg = Pipeline.of(app).store._pg
        rows = len(pg._rows) if isinstance(pg, PgChange) else 0
        return jsonify(pid=os.getpid(), kept=rows)

    return app


def add_known_tokens(url: str, count: int) -> list[tuple[str, str]]:
    """Insert ``count`` tokens for acme/api whose secrets we keep, digested
    as the app digests them; return their ids and secrets."""
    from http_app import create_app as http_app
    from sqlalchemy import text

    from flask_accesstokens.state import app_state
    from flask_accesstokens.tokenformat import generate
    from flask_accesstokens.tokenformat import hint
    from flask_accesstokens.tokenformat import new_id

    os.environ["BENCH_DATABASE_URL"] = url
    app = http_app()
    with app.app_context():
        state = app_state(app)
        known = [(new_id(), generate(state.settings.token_prefix)) for _ in range(count)]
        db = app.extensions["bench.db"]
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accesstokens_token (id, name, type, resource, scopes, hint,"
                    " created_at) VALUES (:id, 'known', 'repository',"
                    " 'workspace=acme/repository=api', 'repository', :hint, now())"
                ),
                [{"id": i, "hint": hint(s)} for i, s in known],
            )
            conn.execute(
                text(
                    "INSERT INTO accesstokens_secret (digest, token_id, created_at)"
                    " VALUES (:digest, :id, now())"
                ),
                [{"digest": state.digester.digest(s), "id": i} for i, s in known],
            )
            conn.execute(text("ANALYZE accesstokens_token"))
            conn.execute(text("ANALYZE accesstokens_secret"))
        db.engine.dispose()
    return known


def request_each(port: int, secrets: list[str]) -> None:
    """One protected request per secret; every one must succeed. Two at a
    time, so the client's own work overlaps the worker's. (Not wrk: it
    cannot stop after a count, and the idle connection it then leaves open
    blocks a sync worker until gunicorn kills it.)"""

    def one(secret: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            conn.request("GET", "/protected/acme/api", headers=headers)
            answer = conn.getresponse()
            answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            raise RuntimeError(f"protected route answered {answer.status}")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, secrets))


def mark_used(engine: Any, where: str, params: dict[str, Any]) -> None:
    """Mark tokens used just now from this client, as another worker's
    usage write would: their next request is due no write. Each row's
    notification drops it from the cache, so wait past the sync bound."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE accesstokens_token SET last_used_at = now() AT TIME ZONE 'UTC',"
                f" last_used_ip = '127.0.0.1', recent_ips = '127.0.0.1' WHERE {where}"
            ),
            params,
        )
    time.sleep(0.5)


def warm(port: int, engine: Any, known: list[tuple[str, str]], chunk: int) -> None:
    """Request each token once, a chunk at a time, each chunk marked used
    first: no request writes, so each keeps its row."""
    for start in range(0, len(known), chunk):
        part = known[start : start + chunk]
        mark_used(engine, "id = ANY(:ids)", {"ids": [token_id for token_id, _ in part]})
        request_each(port, [secret for _, secret in part])


def expected_rows(warm: int) -> int:
    """Rows kept after ``warm`` distinct tokens: at the cap the cache is
    emptied, not trimmed (``PgChange.keep``)."""
    return 0 if warm == 0 else (warm - 1) % MAX_ROWS + 1


def worker(base: str, master: int) -> tuple[int, int, float]:
    """The worker's PID, the rows it keeps, and its VmRSS in MiB."""
    with urllib.request.urlopen(f"{base}/kept", timeout=10) as answer:
        info = json.load(answer)
    pid, kept = int(info["pid"]), int(info["kept"])
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert int(status["PPid"]) == master, "not a worker of this gunicorn"
    return pid, kept, int(status["VmRSS"].split()[0]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgresql", default=os.environ.get("ACCESSTOKENS_TEST_POSTGRESQL_URL"))
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens in the table")
    parser.add_argument("--warm", type=int, nargs="+", default=[0, 1_000, 10_000, 20_000, 50_000])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=2_000, help="tokens marked used at once")
    parser.add_argument("--schema", default="bench_memory")
    args = parser.parse_args(argv)
    if not args.postgresql:
        print("needs --postgresql (or ACCESSTOKENS_TEST_POSTGRESQL_URL)", file=sys.stderr)
        return 2
    steps = sorted(set(args.warm))
    most = steps[-1]
    started = time.monotonic()
    with own_schema(args.postgresql, args.schema) as url:
        # prepare() adds one token of its own, used to warm the route up.
        first = prepare(url, args.tokens - most - 1)
        known = add_known_tokens(url, most)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        print(f"{args.tokens:,} tokens loaded in {time.monotonic() - started:.0f} s")
        print(f"gunicorn -w {args.workers}; the row cache keeps at most {MAX_ROWS:,} rows a worker")
        print(f"{'cache':<6} {'warm tokens':>11} {'kept rows':>10} {'worker RSS':>11}", end="")
        print(f" {'growth':>10}")
        for cache in (True, False):
            app = "bench_memory:create_app()"
            with serving(url, args.workers, cache, app=app) as (base, server):
                port = int(base.rsplit(":", 1)[1])
                # The route, the pools, the listener; then its row dropped,
                # so the rows kept are the warm tokens'.
                mark_used(engine, "name = 'bench'", {})
                request_each(port, [first] * 100)
                mark_used(engine, "name = 'bench'", {})
                done, baseline = 0, 0.0
                for count in steps:
                    warm(port, engine, known[done:count], args.chunk)
                    done = count
                    time.sleep(1)
                    _, kept, rss = worker(base, server.pid)
                    baseline = baseline or rss
                    print(
                        f"{'on' if cache else 'off':<6} {count:>11,} {kept:>10,}"
                        f" {rss:>7.1f} MiB {rss - baseline:>+6.1f} MiB",
                        flush=True,
                    )
                    if cache and kept != expected_rows(count):
                        print(f"  (expected {expected_rows(count):,} rows: the listener reset)")
        engine.dispose()
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
