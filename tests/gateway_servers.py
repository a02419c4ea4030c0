"""Real gateways for the tests and the benchmark: gunicorn serving the test
app with declared gateway routes, a small echo upstream that records what
reaches it, and nginx or Caddy in front, started from the configs in
``examples/gateways/`` exactly as they are, with free loopback ports filled
in. Every process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples" / "gateways"
#: The variables nginx's template names; the rest of its ``$`` are nginx's own.
NGINX_VARIABLES = ("GATEWAY_LISTEN", "CHECK_UPSTREAM", "SERVICE_UPSTREAM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str | None:
    """The gateway's executable (Debian puts nginx in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/bin")


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                text = log.read_text(errors="replace")
                raise RuntimeError(f"nothing on port {port}\n{text}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def started(
    command: list[str], log: Path, port: int, env: dict[str, str] | None = None
) -> Iterator[None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        stop(process)


# -- the app behind the check ----------------------------------------------------------


@contextmanager
def gunicorn(database_url: str, folder: Path, workers: int = 2, **config: str) -> Iterator[int]:
    """``gateway_wsgi:create_app()`` on a free loopback port."""
    port = free_port()
    env = dict(os.environ, ACCESSTOKENS_TEST_WSGI_DATABASE_URL=database_url)
    env["ACCESSTOKENS_TEST_GATEWAY_CONFIG"] = json.dumps(config)
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    command += ["--chdir", str(TESTS), "--graceful-timeout", "5", "gateway_wsgi:create_app()"]
    with started(command, folder / "gunicorn.log", port, env):
        yield port


# -- the upstream service -----------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, list[str]]

    def one(self, name: str) -> str | None:
        """The header's only value; fails if it arrived more than once."""
        values = self.headers.get(name.lower(), [])
        assert len(values) <= 1, f"{name} arrived {len(values)} times: {values}"
        return values[0] if values else None


@dataclass
class Upstream:
    """Records every request that reaches it, and answers 200 with it."""

    port: int
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def echo_upstream() -> Iterator[Upstream]:
    upstream = Upstream(0)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            headers: dict[str, list[str]] = {}
            for name, value in self.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            with lock:
                upstream.seen.append(Seen(self.command, self.path, headers))
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    upstream.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- the gateways ------------------------------------------------------------------------


def render_nginx(template: str, values: dict[str, str]) -> str:
    """``envsubst '${GATEWAY_LISTEN} ...'``: only the named variables."""
    return re.sub(
        r"\$\{(" + "|".join(NGINX_VARIABLES) + r")\}", lambda m: values[m.group(1)], template
    )


@contextmanager
def nginx(
    check_port: int, upstream_port: int, folder: Path, examples: Path = EXAMPLES
) -> Iterator[int]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = render_nginx(
        (examples / "nginx.conf.template").read_text(),
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "CHECK_UPSTREAM": f"127.0.0.1:{check_port}",
            "SERVICE_UPSTREAM": f"127.0.0.1:{upstream_port}",
        },
    )
    (folder / "nginx.conf").write_text(config)
    path = binary("nginx")
    assert path is not None
    globals_ = f"daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log warn;"
    command = [path, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", globals_]
    with started(command, folder / "nginx.log", port):
        yield port


@contextmanager
def caddy(
    check_port: int, upstream_port: int, folder: Path, examples: Path = EXAMPLES
) -> Iterator[int]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        GATEWAY_PORT=str(port),
        GATEWAY_BIND="127.0.0.1",
        CHECK_UPSTREAM=f"127.0.0.1:{check_port}",
        SERVICE_UPSTREAM=f"127.0.0.1:{upstream_port}",
        HOME=str(folder),
        XDG_DATA_HOME=str(folder),
        XDG_CONFIG_HOME=str(folder),
    )
    path = binary("caddy")
    assert path is not None
    command = [path, "run", "--config", str(examples / "Caddyfile"), "--adapter", "caddyfile"]
    with started(command, folder / "caddy.log", port, env):
        yield port


GATEWAYS = {"nginx": nginx, "caddy": caddy}
