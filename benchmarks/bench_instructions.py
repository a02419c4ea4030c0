"""Instructions per request, protected over bare, counted by valgrind.

On a shared machine wall-clock ratios swing with the neighbours' load;
instruction counts do not (``valgrind --tool=callgrind`` counts the same for
the same program and inputs, whatever else runs). They are a proxy for time,
not time: they leave out system calls and cache misses, which the database
lookup has and a bare request has not. Use it to compare changes to the
request path; report wall-clock ratios from ``bench_protect.py``.

Run (needs Debian's ``valgrind``)::

    .venv/bin/python benchmarks/bench_instructions.py            # 1,000 tokens
    .venv/bin/python benchmarks/bench_instructions.py --tokens 100000
    .venv/bin/python benchmarks/bench_instructions.py --postgresql postgresql+psycopg://...

With ``--postgresql`` it also counts the protected route on PostgreSQL, with
the row cache on and off (the tables go in a schema of their own, dropped
after).

Each variant runs twice under callgrind, with a few and with many requests;
the difference divided by the extra requests is the cost of one request,
with start-up and warm-up subtracted out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pgschema import own_schema  # noqa: E402


def pg_child(variant: str, url: str, requests: int) -> None:
    """The protected route on PostgreSQL, cache on (``pg-cache``) or off
    (``pg-nocache``), after the listener has synced."""
    import time

    from flask import Flask
    from flask import jsonify
    from flask_sqlalchemy import SQLAlchemy

    from flask_accesstokens import AccessTokens
    from flask_accesstokens import require_scope
    from flask_accesstokens.pipeline import Pipeline

    app = Flask("bench")
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=url,
        ACCESSTOKENS_API_URL_PREFIX=None,
        ACCESSTOKENS_POSTGRESQL_CACHE=variant == "pg-cache",
    )
    db = SQLAlchemy(app)
    tokens = AccessTokens(app, db=db)

    @app.get("/protected/<workspace>/<repo_slug>")
    @require_scope("repository")
    def protected(workspace: str, repo_slug: str) -> object:
        return jsonify(ok=True)

    with app.app_context():
        db.create_all()
        new = tokens.create_token(
            name="bench", workspace="acme", repository="api", scopes=["repository"]
        )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {new.secret}"}
    for _ in range(20):
        client.get("/protected/acme/api", headers=headers)
    time.sleep(2)  # the first use's last-used write has come back as a notification
    for _ in range(30):
        client.get("/protected/acme/api", headers=headers)
    for _ in range(requests):
        assert client.get("/protected/acme/api", headers=headers).status_code == 200
    pg = Pipeline.of(app).store._pg
    if variant == "pg-cache":
        assert pg and time.monotonic() - pg.synced_at < pg.bound, "the cache was not trusted"
    with app.app_context():
        AccessTokens.dispose_connections()
        db.drop_all()
        db.engine.dispose()


def child(variant: str, tokens: int, requests: int) -> None:
    sys.path.insert(0, str(HERE))
    if variant.startswith("pg-"):
        pg_child(variant, os.environ["BENCH_DATABASE_URL"], requests)
        return
    import bench_protect

    folder = tempfile.mkdtemp()
    _, bare, protected, _, _ = bench_protect.accesstokens_app(
        os.path.join(folder, "tokens.sqlite"), tokens
    )
    call = {"bare": bare, "protected": protected}[variant]
    for _ in range(50):  # warm: compiled statement, row cache, Jinja, imports
        bare()
        protected()
    for _ in range(requests):
        call()
    shutil.rmtree(folder)


def count(variant: str, tokens: int, requests: int, url: str = "") -> int:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/cg",
                sys.executable,
                __file__,
                "--child",
                variant,
                "--tokens",
                str(tokens),
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=True,
            # One hash seed: dict and set layouts, and so the counts, repeat.
            env={**os.environ, "PYTHONHASHSEED": "0", "BENCH_DATABASE_URL": url},
        )
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--postgresql", help="also count PostgreSQL, cache on and off")
    parser.add_argument("--variants", nargs="+", help="only these (bare always runs)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tokens, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 1
    per_request = {}
    variants = ["bare", "protected"]
    if args.postgresql:
        variants += ["pg-cache", "pg-nocache"]
    if args.variants:
        variants = ["bare", *(v for v in variants[1:] if v in args.variants)]
    for variant in variants:
        schema: contextlib.AbstractContextManager[str] = contextlib.nullcontext("")
        if variant.startswith("pg-"):
            schema = own_schema(args.postgresql, "bench_instructions")
        with schema as url:
            few = count(variant, args.tokens, 100, url)
            many = count(variant, args.tokens, 100 + args.requests, url)
        per_request[variant] = (many - few) / args.requests
        print(f"{variant:>10}: {per_request[variant]:,.0f} instructions per request")
    for variant in variants[1:]:
        print(f"{variant} / bare: {per_request[variant] / per_request['bare']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
