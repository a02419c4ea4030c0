"""Cost of ``@require_scope`` relative to a bare Flask request.

Run::

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_protect.py            # 1k, 100k and 1M tokens
    .venv/bin/python benchmarks/bench_protect.py --sizes 1000 --rounds 5   # quick

Everything is measured in one process, in interleaved rounds (each round runs
every variant once, in a shuffled order), and reported as the median time per
request and the median, over rounds, of its ratio to the bare request in the
same round. Absolute times on a shared machine are noise; ratios are what to
compare.

Variants:

- ``bare``: the same route without protection;
- ``accesstokens``: ``@require_scope("repository")`` on SQLite with N tokens
  bulk-loaded, a revocation check on every request;
- ``floor``: the raw-database floor (``floor.py``): a hand-written decorator
  running one raw ``sqlite3`` statement per request, on the same database;
- ``jwt``: Flask-JWT-Extended's ``@jwt_required()``: no database, no
  revocation;
- ``httpauth``: Flask-HTTPAuth's ``HTTPTokenAuth`` with a dict lookup: no
  database, no revocation.

After measuring, the script revokes the token and checks the very next request
is refused, so the figure is for a path that sees revocation.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from datetime import timezone
from typing import Any

from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from floor import one_statement  # noqa: E402

Call = Callable[[], Any]


def bulk_load(path: str, count: int) -> None:
    """Insert ``count`` token rows (random digests) with raw sqlite3: fast,
    and the table is as big as a real one."""
    conn = sqlite3.connect(path)
    if os.environ.get("BENCH_WAL"):
        conn.execute("PRAGMA journal_mode=WAL")
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    batch = 50_000
    for start in range(0, count, batch):
        ids = [secrets.token_hex(16) for _ in range(min(batch, count - start))]
        conn.executemany(
            "INSERT INTO accesstokens_token (id, name, type, resource,"
            " scopes, hint, created_at) VALUES (?, 'bulk', 'repository', ?,"
            " 'repository', 'abcd', ?)",
            [
                (i, f"workspace=ws{n % 1000}/repository=repo{n}", now)
                for n, i in enumerate(ids, start)
            ],
        )
        conn.executemany(
            "INSERT INTO accesstokens_secret (digest, token_id, created_at) VALUES (?, ?, ?)",
            [(secrets.token_hex(32), i, now) for i in ids],
        )
        conn.commit()
    conn.close()


def accesstokens_app(
    path: str, size: int, url: str | None = None, config: dict[str, Any] | None = None
) -> tuple[Flask, Call, Call, Callable[[], int], Call]:
    """The app every in-process benchmark measures: bare, protected and floor
    routes on SQLite at ``path`` with ``size`` filler tokens, or on the
    database at ``url`` (PostgreSQL: filled server-side) with ``config``."""
    url = url or f"sqlite:///{path}"
    app = Flask("bench")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url, **(config or {}))
    db = SQLAlchemy(app)
    tokens = AccessTokens(app, db=db)

    @app.get("/bare/<workspace>/<repo_slug>")
    def bare(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/protected/<workspace>/<repo_slug>")
    @require_scope("repository")
    def protected(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.get("/floor/<workspace>/<repo_slug>")
    @one_statement(url, "bench")
    def floor(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    with app.app_context():
        db.create_all()
        if not url.startswith("sqlite:///"):
            from bench_http import bulk_load_server_side

            bulk_load_server_side(db, size)
    if url.startswith("sqlite:///"):
        bulk_load(path, size)
    with app.app_context():
        new = tokens.create_token(
            name="bench", workspace="acme", repository="api", scopes=["repository"]
        )
        token_id = new.token.id
    client = app.test_client()
    headers = {"Authorization": f"Bearer {new.secret}"}

    def revoke_and_check() -> int:
        with app.app_context():
            tokens.revoke_token(token_id)
        return client.get("/protected/acme/api", headers=headers).status_code

    return (
        app,
        lambda: client.get("/bare/acme/api"),
        lambda: client.get("/protected/acme/api", headers=headers),
        revoke_and_check,
        lambda: client.get("/floor/acme/api", headers=headers),
    )


def jwt_call() -> Call | None:
    try:
        from flask_jwt_extended import create_access_token
        from flask_jwt_extended import jwt_required
        from flask_jwt_extended import JWTManager
    except ImportError:
        return None
    app = Flask("jwt")
    app.config.update(JWT_SECRET_KEY="bench-secret-key-bench-secret-key")
    JWTManager(app)

    @app.get("/protected/<workspace>/<repo_slug>")
    @jwt_required()
    def protected(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    with app.app_context():
        token = create_access_token("ci")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: client.get("/protected/acme/api", headers=headers)


def httpauth_call() -> Call | None:
    try:
        from flask_httpauth import HTTPTokenAuth
    except ImportError:
        return None
    app = Flask("httpauth")
    auth = HTTPTokenAuth(scheme="Bearer")
    known = {secrets.token_urlsafe(32): "ci"}

    @auth.verify_token
    def verify(token: str) -> str | None:
        return known.get(token)

    @app.get("/protected/<workspace>/<repo_slug>")
    @auth.login_required
    def protected(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    client = app.test_client()
    headers = {"Authorization": f"Bearer {next(iter(known))}"}
    return lambda: client.get("/protected/acme/api", headers=headers)


def measure(
    variants: dict[str, Call], rounds: int, requests: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median microseconds per request for each variant, over interleaved
    rounds, and the median over rounds of each variant's time divided by the
    bare request's time in the same round (neighbours' load drifts between
    rounds; within one round both see about the same)."""
    for call in variants.values():  # warm up caches, pools, compiled statements
        for _ in range(200):
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            call = variants[name]
            start = time.perf_counter()
            for _ in range(requests):
                call()
            samples[name].append((time.perf_counter() - start) / requests * 1e6)
    times = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {
        name: statistics.median(v / b for v, b in zip(values, samples["bare"], strict=True))
        for name, values in samples.items()
    }
    return times, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=1_000)
    args = parser.parse_args(argv)

    extras = {"jwt": jwt_call(), "httpauth": httpauth_call()}
    print(f"python {sys.version.split()[0]}, {args.rounds} rounds x {args.requests} requests")
    print(f"{'tokens':>9}  {'variant':<13} {'us/request':>10}  {'ratio':>6}")
    worst = 0.0
    table: list[tuple[int, dict[str, float], dict[str, float], int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = os.path.join(tmp, f"bench-{size}.sqlite")
            started = time.perf_counter()
            app, bare, protected, revoke_and_check, floor = accesstokens_app(path, size)
            load = time.perf_counter() - started
            variants: dict[str, Call] = {"bare": bare, "accesstokens": protected, "floor": floor}
            variants.update({k: v for k, v in extras.items() if v is not None})
            with app.app_context():
                times, ratios = measure(variants, args.rounds, args.requests)
            for name, value in times.items():
                print(f"{size:>9,}  {name:<13} {value:>10.1f}  {ratios[name]:>6.3f}")
            worst = max(worst, ratios["accesstokens"])
            status = revoke_and_check()
            print(f"{size:>9,}  (loaded in {load:.1f}s; after revoke: {status})")
            table.append((size, times, ratios, status))
            if status != 401:
                print("revocation was not seen on the next request", file=sys.stderr)
                return 1
    print(f"worst accesstokens/bare ratio: {worst:.3f}")
    print()
    print(markdown(table))
    return 0


def markdown(table: list[tuple[int, dict[str, float], dict[str, float], int]]) -> str:
    """The run as a table: bare in microseconds, the rest as ratios to it."""
    names = [n for n in ("accesstokens", "floor", "httpauth", "jwt") if n in table[0][1]]
    lines = [
        "| tokens | bare (µs) | " + " | ".join(f"{n} (× bare)" for n in names) + " | revoked → |",
        "|---:|---:|" + "---:|" * len(names) + "---:|",
    ]
    for size, times, ratios, status in table:
        cells = " | ".join(f"{ratios[n]:.3f}" for n in names)
        lines.append(f"| {size:,} | {times['bare']:.1f} | {cells} | {status} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
