"""Throughput of a protected route against the same route bare, over real
HTTP: gunicorn on loopback, load from wrk (Debian package ``wrk``) in another
process.

Run::

    .venv/bin/python benchmarks/bench_http.py                 # SQLite
    .venv/bin/python benchmarks/bench_http.py --postgresql postgresql+psycopg://...
    .venv/bin/python benchmarks/bench_http.py --databases postgresql --delay-ms 1

On PostgreSQL it measures the row cache on and off, back to back (``--cache``);
``--delay-ms`` puts ``delayproxy.py`` between the app and the database, adding
that much to every round trip (the listener's too).

For each database the script fills the token table (``--tokens``), starts
gunicorn, then runs interleaved rounds (each round loads every route, in a
shuffled order) and reports median requests per second and their ratios:
protected over bare, and the raw-database floor (``floor.py``: one raw
statement per request) over bare.
The server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(url: str, tokens: int) -> str:
    """Create the tables, ``tokens`` filler tokens and one real token."""
    os.environ["BENCH_DATABASE_URL"] = url
    from http_app import create_app

    app = create_app()
    with app.app_context():
        db = app.extensions["bench.db"]
        db.drop_all()
        db.create_all()
        ext = app.extensions["accesstokens"]
        if tokens and url.startswith("sqlite:///"):
            from bench_protect import bulk_load

            bulk_load(url.removeprefix("sqlite:///"), tokens)
        elif tokens:
            bulk_load_server_side(db, tokens)
        new = ext.create_token(
            name="bench", workspace="acme", repository="api", scopes=["repository"]
        )
        secret: str = new.secret
        db.session.remove()
        db.engine.dispose()
    return secret


def bulk_load_server_side(db: Any, count: int) -> None:
    """Fill a PostgreSQL token table with ``count`` rows made by the server
    (``generate_series``): as big as a real table, in seconds."""
    from sqlalchemy import text

    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accesstokens_token (id, name, type, resource, scopes,"
                " hint, created_at) SELECT md5(n::text), 'bulk', 'repository',"
                " 'workspace=ws' || n % 1000 || '/repository=repo' || n, 'repository', 'abcd',"
                " now() FROM generate_series(1, :count) n"
            ),
            {"count": count},
        )
        conn.execute(
            text(
                "INSERT INTO accesstokens_secret (digest, token_id, created_at)"
                " SELECT encode(sha256(n::text::bytea), 'hex'), md5(n::text), now()"
                " FROM generate_series(1, :count) n"
            ),
            {"count": count},
        )
        conn.execute(text("ANALYZE accesstokens_token"))
        conn.execute(text("ANALYZE accesstokens_secret"))


def wrk(url: str, seconds: int, header: str | None) -> float:
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", url]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not match:
        raise RuntimeError(out.stdout + out.stderr)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses from {url}")
    return float(match.group(1))


def worker_rss_mib(master: int) -> float:
    """The largest resident set among the gunicorn master's children, in MiB."""
    largest = 0
    for task in Path(f"/proc/{master}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]))
    return largest / 1024


@contextlib.contextmanager
def serving(
    url: str, workers: int, cache: bool = True, app: str = "http_app:create_app()"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn serving ``app`` from this folder, up and answering: yields its
    base URL and the master process; stopped by its PID after."""
    port = free_port()
    env = dict(os.environ, BENCH_DATABASE_URL=url, BENCH_POSTGRESQL_CACHE="1" if cache else "0")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(HERE),
            "--log-level",
            "warning",
            app,
        ],  # fmt: skip
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/bare/acme/api", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def serve_and_measure(
    url: str, secret: str, workers: int, rounds: int, seconds: int, cache: bool = True
) -> dict[str, float]:
    with serving(url, workers, cache) as (base, server):
        header = f"Authorization: Bearer {secret}"
        variants = {"bare": None, "protected": header, "floor": header}
        for name, hdr in variants.items():  # warm every worker's pools
            wrk(f"{base}/{name}/acme/api", 1, hdr)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for _ in range(rounds):
            random.shuffle(order)
            for name in order:
                samples[name].append(wrk(f"{base}/{name}/acme/api", seconds, variants[name]))
        result = {name: statistics.median(values) for name, values in samples.items()}
        result["rss_mib"] = worker_rss_mib(server.pid)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgresql", default=os.environ.get("ACCESSTOKENS_TEST_POSTGRESQL_URL"))
    parser.add_argument("--tokens", type=int, default=1_000_000, help="filler tokens")
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--cache", choices=["on", "off", "both"], default="both")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added database latency")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        databases = {"sqlite": (f"sqlite:///{tmp}/bench.sqlite", args.tokens)}
        if args.postgresql:
            databases["postgresql"] = (args.postgresql, args.tokens)
        databases = {k: v for k, v in databases.items() if k in args.databases}
        print(f"gunicorn -w {args.workers}, wrk -c8, {args.rounds} rounds x {args.seconds}s")
        print(
            f"{'database':<11} {'bare req/s':>11} {'protected':>10} {'throughput':>11} {'cost':>6}"
            f" {'floor':>7} {'floor cost':>11} {'worker RSS':>11}"
        )
        for name, (url, tokens) in databases.items():
            secret = prepare(url, tokens)
            caches = {"on": [True], "off": [False], "both": [False, True]}[args.cache]
            if name != "postgresql":
                caches = [True]
            with delayed(url, args.delay_ms) as served:
                for cache in caches:
                    result = serve_and_measure(
                        served, secret, args.workers, args.rounds, args.seconds, cache
                    )
                    ratio = result["protected"] / result["bare"]
                    floor = result["floor"] / result["bare"]
                    label = name if name != "postgresql" else f"pg cache {'on' if cache else 'off'}"
                    print(
                        f"{label:<11} {result['bare']:>11.0f} {result['protected']:>10.0f}"
                        f" {ratio:>11.3f} {1 / ratio:>6.2f}x {result['floor']:>7.0f}"
                        f" {1 / floor:>10.2f}x {result['rss_mib']:>7.1f} MiB"
                    )
    return 0


@contextlib.contextmanager
def delayed(url: str, delay_ms: float) -> Iterator[str]:
    """``url`` itself, or reached through ``delayproxy.py`` adding ``delay_ms``."""
    if not delay_ms or url.startswith("sqlite"):
        yield url
        return
    from sqlalchemy.engine import make_url

    target = make_url(url)
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, str(HERE / "delayproxy.py"), str(port), target.host or "127.0.0.1"]
        + [str(target.port or 5432), "--ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        print(f"(through delayproxy.py, +{delay_ms} ms per round trip)")
        yield target.set(port=port).render_as_string(hide_password=False)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
