"""What the forward-auth check costs behind a real gateway: requests per second
through nginx (or Caddy) with the check (gateway + check + upstream) against
the same gateway without it (gateway + upstream).

Run::

    .venv/bin/python benchmarks/bench_gateway.py                       # SQLite
    .venv/bin/python benchmarks/bench_gateway.py --postgresql postgresql+psycopg://...

The gateways run from ``examples/gateways/`` as the tests run them; the
variant without the check is the same file with the check taken out. The
app serving the check is gunicorn (``tests/gateway_wsgi.py``); the upstream
is a second gunicorn serving a one-line WSGI app. Load comes from
``--clients`` processes holding keep-alive connections; rounds are
interleaved (each round measures every setup, in a shuffled order) and the
medians are reported. Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))

from gateway_servers import binary  # noqa: E402
from gateway_servers import caddy  # noqa: E402
from gateway_servers import EXAMPLES  # noqa: E402
from gateway_servers import free_port  # noqa: E402
from gateway_servers import gunicorn  # noqa: E402
from gateway_servers import nginx  # noqa: E402
from gateway_servers import started  # noqa: E402

PATH = "/svc/acme/api/builds"


def upstream_app(environ: dict[str, str], start_response: object) -> list[bytes]:
    """The service: answers at once, so the gateway and the check dominate."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])  # type: ignore[operator]
    return [b"ok"]


@contextmanager
def upstream(folder: Path, workers: int) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    command += ["--chdir", str(HERE), "bench_gateway:upstream_app"]
    with started(command, folder / "upstream.log", port):
        yield port


@contextmanager
def without_check(gateway: str, upstream_port: int, folder: Path) -> Iterator[int]:
    """The same gateway file with the check taken out."""
    folder.mkdir(parents=True, exist_ok=True)
    if gateway == "nginx":
        text = (EXAMPLES / "nginx.conf.template").read_text()
        bare = re.sub(r"\n\s*auth_request /_accesstokens_check;", "", text)
        assert bare != text
        copy = folder / "examples"
        copy.mkdir(exist_ok=True)
        (copy / "nginx.conf.template").write_text(bare)
        with nginx(1, upstream_port, folder, copy) as port:
            yield port
    else:
        text = (EXAMPLES / "Caddyfile").read_text()
        bare = re.sub(r"\n\t\tforward_auth [^\n]*\{.*?\n\t\t\}", "", text, flags=re.S)
        assert bare != text
        copy = folder / "examples"
        copy.mkdir(exist_ok=True)
        (copy / "Caddyfile").write_text(bare)
        with caddy(1, upstream_port, folder, copy) as port:
            yield port


def _client(args: tuple[int, str, float]) -> tuple[int, int]:
    port, authorization, seconds = args
    ok = bad = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn.request("GET", PATH, headers={"Authorization": authorization})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                ok += 1
            else:
                bad += 1
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            bad += 1
            conn.close()
    conn.close()
    return ok, bad


def measure(port: int, authorization: str, seconds: float, clients: int) -> float:
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(_client, [(port, authorization, seconds)] * clients)
    ok = sum(r[0] for r in results)
    bad = sum(r[1] for r in results)
    if bad:
        raise RuntimeError(f"{bad} requests failed on port {port}")
    return ok / seconds


def in_process(database: str, count: int = 2000, rounds: int = 5) -> dict[str, float]:
    """Microseconds per request in process (Flask test client): an
    unprotected route, the same request to a protected view, and the check
    deciding about it. No gateway, no sockets: the check's own cost."""
    from flask import Flask
    from gateway_wsgi import declare
    from helpers import make_app

    app, db, tokens = make_app(database)
    declare(tokens)

    @app.get("/bare/<workspace>/<repo_slug>")
    def bare(workspace: str, repo_slug: str) -> str:
        return "ok"

    with app.app_context():
        secret = tokens.create_token(
            name="bench", workspace="acme", repository="api", scopes=["pipeline", "repository"]
        ).secret
    auth = {"Authorization": f"Bearer {secret}"}
    forwarded = {
        **auth,
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": PATH,
        "X-Forwarded-For": "198.51.100.7",
    }
    requests = {
        "unprotected route": ("/bare/acme/api", auth),
        "@require_scope view": ("/repositories/acme/api", auth),
        "gateway check": ("/api/access-tokens/check", forwarded),
    }
    client = Flask.test_client(app)
    samples: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(rounds):
        for name, (url, headers) in requests.items():
            assert client.get(url, headers=headers).status_code == 200
            start = time.perf_counter()
            for _ in range(count):
                client.get(url, headers=headers)
            samples[name].append((time.perf_counter() - start) / count * 1e6)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return {name: statistics.median(values) for name, values in samples.items()}


def prepare(database: str) -> str:
    from helpers import make_app

    app, db, tokens = make_app(database)
    with app.app_context():
        secret = tokens.create_token(
            name="bench", workspace="acme", repository="api", scopes=["pipeline"]
        ).secret
        db.session.remove()
        db.engine.dispose()
    return f"Bearer {secret}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgresql", help="a PostgreSQL URL (a fresh schema is used)")
    parser.add_argument("--gateways", nargs="+", default=["nginx", "caddy"])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the check")
    args = parser.parse_args(argv)
    for name in args.gateways:
        if binary(name) is None:
            print(f"needs {name}: apt-get install {name}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        if args.postgresql:
            from services import fresh_schema

            database = stack.enter_context(fresh_schema(args.postgresql))
        else:
            database = f"sqlite:///{folder / 'tokens.sqlite'}"
        costs = in_process(database)
        bare = costs["unprotected route"]
        for name, micros in costs.items():
            print(f"in process: {name:20} {micros:7.1f} µs   × {micros / bare:.2f}")
        authorization = prepare(database)
        check_port = stack.enter_context(gunicorn(database, folder / "check", args.workers))
        upstream_port = stack.enter_context(upstream(folder, 2))
        setups: dict[str, int] = {}
        gateways = {"nginx": nginx, "caddy": caddy}
        for name in args.gateways:
            setups[f"{name} + check + upstream"] = stack.enter_context(
                gateways[name](check_port, upstream_port, folder / f"{name}-check")
            )
            setups[f"{name} + upstream"] = stack.enter_context(
                without_check(name, upstream_port, folder / f"{name}-bare")
            )
        for port in setups.values():  # warm up every path once
            measure(port, authorization, 0.5, 1)
        samples: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(args.rounds):
            order = list(setups)
            random.shuffle(order)
            for name in order:
                samples[name].append(
                    measure(setups[name], authorization, args.seconds, args.clients)
                )
        kind = "PostgreSQL" if args.postgresql else "SQLite"
        print(
            f"{kind}; check: gunicorn -w {args.workers}; upstream: gunicorn -w 2; "
            f"{args.clients} keep-alive clients; {args.rounds} rounds x {args.seconds:g}s"
        )
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name in args.gateways:
            checked = medians[f"{name} + check + upstream"]
            bare = medians[f"{name} + upstream"]
            print(
                f"{name:6} with check {checked:8.0f} req/s   without {bare:8.0f} req/s"
                f"   ratio {checked / bare:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
