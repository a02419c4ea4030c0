"""Servers for the PostgreSQL cache's fault tests: a cluster of the test's own
(to restart without disturbing the shared one) and pgbouncer in transaction
mode. Both started by the test, stopped by it; missing binaries skip (fail in
CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from services import in_ci
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true but {what} is missing")
    pytest.skip(f"{what} is missing")


def _shared_dir() -> str:
    """A directory the ``postgres`` system user can read when we run as root."""
    path = tempfile.mkdtemp(prefix="accesstokens-")
    os.chmod(path, 0o755)
    return path


class Cluster:
    """A PostgreSQL cluster of the test's own, made by ``.ci/postgres.sh``."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = os.path.join(_shared_dir(), "data")
        self.env = dict(os.environ, PGPORT=str(self.port), ACCESSTOKENS_PG_DIR=self.dir)
        self.url = ""

    def start(self) -> None:
        out = subprocess.run(
            ["bash", str(ROOT / ".ci" / "postgres.sh")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            _missing(f"a PostgreSQL cluster of our own ({out.stderr.strip()[-300:]})")
        for line in out.stdout.splitlines():
            if "ACCESSTOKENS_TEST_POSTGRESQL_URL=" in line:
                self.url = line.split("=", 1)[1].strip("'")

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / ".ci" / "postgres.sh"), "stop"],
            env=self.env,
            capture_output=True,
            timeout=60,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(os.path.dirname(self.dir), ignore_errors=True)


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@contextmanager
def pgbouncer(url: str, search_path: str, pool_size: int = 2) -> Iterator[str]:
    """pgbouncer in transaction mode in front of ``url``'s database; yields
    the URL to reach it. Every server connection selects ``search_path``."""
    if not os.path.exists(PGBOUNCER):
        _missing("pgbouncer (Debian package pgbouncer)")
    target = make_url(url)
    port = _free_port()
    directory = _shared_dir()
    ini = os.path.join(directory, "pgbouncer.ini")
    users = os.path.join(directory, "users.txt")
    with open(users, "w") as f:
        f.write(f'"{target.username}" ""\n')
    with open(ini, "w") as f:
        f.write(
            "[databases]\n"
            f"{target.database} = host={target.host} port={target.port} "
            f"dbname={target.database} user={target.username} password={target.password} "
            f"connect_query='SET search_path = {search_path}'\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
    for name in (ini, users):
        os.chmod(name, 0o644)
    command = [PGBOUNCER, ini]
    if os.getuid() == 0:
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "pgbouncer did not start"
                time.sleep(0.05)
        plain = target.set(host="127.0.0.1", port=port, password=None, query={})
        yield plain.render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)
