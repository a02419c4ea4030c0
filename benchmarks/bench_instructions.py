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
    .venv/bin/python benchmarks/bench_instructions.py --postgresql postgresql+psycopg://... \
        --variants protected pg-cache pg-nocache

With ``--postgresql`` it also counts the protected route on PostgreSQL, with
the row cache on and off (the tables go in a schema of this run's own,
dropped after; ``--tokens`` filler rows made server-side). Every variant
runs the same app (``bench_protect.accesstokens_app``: same routes, same
surfaces), only the database differs.

Each variant runs twice under callgrind, with a few and with many requests;
the difference divided by the extra requests is the cost of one request,
with start-up and warm-up subtracted out.

Only the thread that serves the requests is counted: callgrind runs with
``--separate-threads=yes`` and the figure is the main thread's (thread 1)
total, for every variant alike. Everything a request does is on that
thread. What it leaves out is PostgreSQL's listener thread
(``pgchange.py``), whose syncs are paced by the clock, not by requests:
valgrind slows the program some fifty times, so a run saw some fifty times
more syncs per request than a native one would, all of them charged to the
requests. The total over all threads is printed beside, in brackets.

For the same reason the PostgreSQL children set
``ACCESSTOKENS_POSTGRESQL_SYNC_BOUND`` to its maximum, 2 s (the default is
0.25 s): under valgrind's stretched clock a 0.25 s bound lapses between
syncs now and then, and those requests run the statement. The code a cached
request runs is the same whatever the bound. Each run prints how many of its
requests ran a statement; when ``pg-cache``'s few and many runs differ in
that count, the extra requests were not all cached ones, and the pair is
run again (up to three times; the attempts are printed).
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

#: This run's own schema on the PostgreSQL server (others may share it).
SCHEMA = f"bench_instructions_{os.getpid()}"
#: Runs of ``pg-cache`` until its few and many requests ran as many statements.
ATTEMPTS = 3
#: PostgreSQL's sync bound in the children (its maximum): valgrind stretches
#: wall time some fifty times, the listener's syncs with it.
SYNC_BOUND = 2.0


def child(variant: str, tokens: int, requests: int) -> None:
    """One variant's requests, on the same app (``bench_protect``'s: same
    routes, same surfaces, ``tokens`` filler tokens) whatever the database."""
    import time

    sys.path.insert(0, str(HERE))
    import bench_protect

    from flask_accesstokens.pipeline import Pipeline

    url, config = None, {}
    if variant.startswith("pg-"):
        url = os.environ["BENCH_DATABASE_URL"]
        config = {
            "ACCESSTOKENS_POSTGRESQL_CACHE": variant == "pg-cache",
            "ACCESSTOKENS_POSTGRESQL_SYNC_BOUND": SYNC_BOUND,
        }
    folder = tempfile.mkdtemp()
    app, bare, protected, _, _ = bench_protect.accesstokens_app(
        os.path.join(folder, "tokens.sqlite"), tokens, url, config
    )
    call = bare if variant == "bare" else protected
    for _ in range(50):  # warm: compiled statement, row cache, Jinja, imports
        bare()
        protected()
    if url:
        time.sleep(2)  # the first use's last-used write has come back as a notification
        for _ in range(30):
            bare()
            protected()
    # Lookups that ran a statement (a wrapper only they pass through: a hit
    # costs nothing more): on PostgreSQL with the cache on, each is a
    # request that found the cache untrusted (the listener late to sync).
    store = Pipeline.of(app).store
    statements = 0
    query = store._query

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal statements
        statements += 1
        return query(*args, **kwargs)  # type: ignore[arg-type]

    store._query = counted  # type: ignore[method-assign]
    for _ in range(requests):
        assert call().status_code == 200
    print(f"statements: {statements}")
    if url:
        pg = store._pg
        if variant == "pg-cache":
            assert pg and time.monotonic() - pg.synced_at < pg.bound, "the cache was not trusted"
        db = app.extensions["sqlalchemy"]
        with app.app_context():
            from flask_accesstokens import AccessTokens

            AccessTokens.dispose_connections()
            db.drop_all()
            db.engine.dispose()
    shutil.rmtree(folder)


def count(
    variant: str, tokens: int, requests: int, url: str = "", keep: str = ""
) -> tuple[int, int, int]:
    """Instructions of the thread that serves the requests (the main
    thread, callgrind's thread 1), of all threads, and how many of the
    requests ran a statement."""
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
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
        main = _totals(Path(out, "cg-01"))
        if keep:
            shutil.copy(Path(out, "cg-01"), keep)
    ran = re.search(r"^statements: (\d+)$", result.stdout, re.MULTILINE)
    assert ran, result.stdout[-2000:]
    return main, int(found.group(1)), int(ran.group(1))


def _totals(path: Path) -> int:
    found = re.search(r"^totals: (\d+)", path.read_text(), re.MULTILINE)
    assert found, f"no totals in {path}"
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--postgresql", help="also count PostgreSQL, cache on and off")
    parser.add_argument("--variants", nargs="+", help="only these (bare always runs)")
    parser.add_argument(
        "--keep", help="copy each run's main-thread callgrind file into this folder"
    )
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
            schema = own_schema(args.postgresql, SCHEMA)
        keep = ["", ""]
        if args.keep:
            keep = [os.path.join(args.keep, f"{variant}-{n}.cg") for n in ("few", "many")]
        with schema as url:
            for attempt in range(1, ATTEMPTS + 1):
                few, few_all, few_ran = count(variant, args.tokens, 100, url, keep[0])
                many, many_all, many_ran = count(
                    variant, args.tokens, 100 + args.requests, url, keep[1]
                )
                if variant != "pg-cache" or many_ran == few_ran:
                    break
                # Some of the extra requests found the cache untrusted (the
                # listener late under valgrind's clock): they are not the
                # cached path this variant measures. Counted again.
                print(
                    f"{variant:>10}: attempt {attempt}: statements run"
                    f" {few_ran}/100, {many_ran}/{100 + args.requests}; again"
                )
        per_request[variant] = (many - few) / args.requests
        every = (many_all - few_all) / args.requests
        print(
            f"{variant:>10}: {per_request[variant]:,.0f} instructions per request"
            f" (all threads: {every:,.0f}; statements run: {few_ran}/100,"
            f" {many_ran}/{100 + args.requests})"
        )
    for variant in variants[1:]:
        print(f"{variant} / bare: {per_request[variant] / per_request['bare']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
