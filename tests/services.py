"""Locating PostgreSQL for the tests, and giving each test its own schema.

The server comes from ``ACCESSTOKENS_TEST_POSTGRESQL_URL``; without it the
PostgreSQL tests skip and say how to get one. Each test gets a fresh schema,
selected through the connection's ``search_path``, so tests never see each
other's rows and nothing has to be truncated.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

URL_VARIABLE = "ACCESSTOKENS_TEST_POSTGRESQL_URL"
SKIP_REASON = (
    f"PostgreSQL tests need {URL_VARIABLE}: run "
    f'`eval "$(bash .ci/postgres.sh)"` (starts a local server and exports it), '
    f"or export {URL_VARIABLE}=postgresql+psycopg://user:password@127.0.0.1:5432/db"
)


def postgresql_url() -> str | None:
    """The server's URL, or None when PostgreSQL tests should skip."""
    return os.environ.get(URL_VARIABLE) or None


def in_ci() -> bool:
    """CI must run every test: there a missing server fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def require_postgresql() -> str:
    """The server's URL; skips the calling test when there is none (fails in CI)."""
    url = postgresql_url()
    if url is None:
        if in_ci():
            pytest.fail(f"CI=true but no PostgreSQL. {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return url


#: Mark a whole module or test as needing PostgreSQL. In CI the tests run
#: anyway, and :func:`require_postgresql` in their fixtures fails them.
needs_postgresql = pytest.mark.skipif(postgresql_url() is None and not in_ci(), reason=SKIP_REASON)


STANDBY_VARIABLES = (
    "ACCESSTOKENS_TEST_PRIMARY_URL",
    "ACCESSTOKENS_TEST_STANDBY_URL",
    "ACCESSTOKENS_TEST_PRIMARY_ADMIN_URL",
    "ACCESSTOKENS_TEST_STANDBY_ADMIN_URL",
)
STANDBY_SKIP_REASON = (
    "standby tests need a primary with a synchronous hot standby: run "
    '`eval "$(bash .ci/standby.sh)"` (two local clusters, pg_basebackup) to export '
    + ", ".join(STANDBY_VARIABLES)
)


def require_standby() -> tuple[str, str, str, str]:
    """Primary, standby, and their superuser URLs; skips when there are none
    (fails in CI)."""
    urls = [os.environ.get(name) for name in STANDBY_VARIABLES]
    if not all(urls):
        if in_ci():
            pytest.fail(f"CI=true but no standby. {STANDBY_SKIP_REASON}")
        pytest.skip(STANDBY_SKIP_REASON)
    primary, standby, primary_admin, standby_admin = (str(url) for url in urls)
    return primary, standby, primary_admin, standby_admin


def with_options(url: str, **settings: str | int) -> str:
    """``url`` with server settings (``search_path``, ``statement_timeout``)
    applied to every connection through libpq's ``options``."""
    parsed = make_url(url)
    options = " ".join(f"-c {name}={value}" for name, value in settings.items())
    existing = parsed.query.get("options")
    if isinstance(existing, str) and existing:
        options = f"{existing} {options}"
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def with_port(url: str, port: int) -> str:
    """The same database reached through another port (a proxy)."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """Create an empty schema, yield a URL whose connections use it, drop it."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        yield with_options(url, search_path=name)
    finally:
        try:
            with admin.begin() as conn:
                # Never wait on a connection a test leaked: fail loudly instead.
                conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        finally:
            admin.dispose()


def schema_of(url: str) -> str:
    """The schema a URL made by :func:`fresh_schema` selects."""
    options = make_url(url).query["options"]
    assert isinstance(options, str)
    for part in options.split("-c "):
        name, _, value = part.strip().partition("=")
        if name == "search_path":
            return value
    raise ValueError("no search_path in the URL")


class TcpProxy:
    """A loopback TCP proxy in front of the database, to cut it like a
    stopped server (connections dropped, new ones reset at once) or make it
    unreachable (connections accepted, nothing answered), and restore it,
    without touching the server other tests share."""

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self.target = (target.host or "127.0.0.1", target.port or 5432)
        self.mode = "up"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)

    def url(self, url: str) -> str:
        """``url`` reached through this proxy."""
        return with_port(url, self.port)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # timeout
                continue
            client.settimeout(None)
            with self._lock:
                mode = self.mode
                if mode != "down":
                    self._sockets.add(client)
            if mode == "down":
                _reset(client)
            elif mode == "up":
                self._spawn(self._connect, client)
            # "blackhole": keep the socket open and never answer.

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.add(upstream)
            cut = self.mode == "down"
        if cut:  # cut while connecting
            self._close(client)
            self._close(upstream)
            return
        for src, dst in ((client, upstream), (upstream, client)):
            self._spawn(self._pump, src, dst)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.mode == "blackhole" and not self._stopped.is_set():
                    time.sleep(0.02)  # hold the bytes: a network that went silent
                dst.sendall(data)
        except OSError:
            pass
        self._close(src)
        self._close(dst)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            if sock not in self._sockets:
                return
            self._sockets.discard(sock)
        _reset(sock)

    def cut(self) -> None:
        """Like a stopped server: every connection dropped, new ones reset."""
        with self._lock:
            self.mode = "down"
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _reset(sock)

    def blackhole(self) -> None:
        """Like a network that went silent: new connections are accepted and
        never answered; bytes on open ones are held."""
        self.mode = "blackhole"

    def restore(self) -> None:
        """Back up: new connections reach the server again."""
        self.mode = "up"

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        self.cut()
        self._listener.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a dying server's kernel would: the peer
    notices at once and no FIN_WAIT state lingers."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv() on it
    except OSError:
        pass
    sock.close()
