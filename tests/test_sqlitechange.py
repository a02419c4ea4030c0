"""``sqlitechange``: a commit stamp read from the SQLite file, never a false
"unchanged"; and the request path that trusts it, under revocations
committed by other processes through the library and through plain SQL."""

from __future__ import annotations

import os
import random
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.sqlitechange import SQLiteChange
from flask_accesstokens.sqlitechange import WAL_HEADER

MODES = ["delete", "truncate", "persist", "wal"]


def connect(path: Path, mode: str | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    if mode:
        conn.execute(f"PRAGMA journal_mode={mode}")
    return conn


@pytest.fixture(params=MODES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    path = tmp_path / "change.sqlite"
    writer = connect(path, request.param)
    writer.execute("CREATE TABLE t (x)")
    writer.close()
    yield path, request.param


@pytest.fixture
def watched(database: tuple[Path, str]) -> Iterator[tuple[SQLiteChange, sqlite3.Connection]]:
    """A watcher beside a reader connection that has queried, as the lookup
    uses it."""
    path, mode = database
    reader = connect(path)
    reader.execute("SELECT count(*) FROM t").fetchone()
    change = SQLiteChange.for_connection(reader)
    assert change is not None
    yield change, reader
    change.close()
    reader.close()


def test_trusted_and_stable_without_commits(watched: tuple[SQLiteChange, sqlite3.Connection]):
    change, reader = watched
    first = change.version()
    assert first is not None
    reader.execute("SELECT * FROM t").fetchall()  # reading is not a commit
    assert change.version() == first


def test_every_commit_changes_it(
    watched: tuple[SQLiteChange, sqlite3.Connection], database: tuple[Path, str]
):
    change, _ = watched
    writer = connect(database[0])
    seen = {change.version()}
    for i in range(20):
        writer.execute("INSERT INTO t VALUES (?)", (i,))
        version = change.version()
        assert version is not None and version not in seen
        seen.add(version)
    writer.close()


def test_commit_from_another_process(
    watched: tuple[SQLiteChange, sqlite3.Connection], database: tuple[Path, str]
):
    change, _ = watched
    before = change.version()
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " c.execute('INSERT INTO t VALUES (1)'); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code, str(database[0])], check=True, timeout=30)
    assert change.version() not in (None, before)


def test_rollback_is_not_a_commit(
    watched: tuple[SQLiteChange, sqlite3.Connection], database: tuple[Path, str]
):
    change, _ = watched
    before = change.version()
    writer = connect(database[0])
    writer.execute("BEGIN")
    writer.execute("INSERT INTO t VALUES (1)")
    writer.execute("ROLLBACK")
    writer.close()
    # Unchanged content may or may not keep the stamp; what must hold is that
    # it is still trusted and a later commit changes it.
    assert change.version() is not None
    writer = connect(database[0])
    writer.execute("INSERT INTO t VALUES (2)")
    writer.close()
    assert change.version() != before


def test_journal_mode_round_trip_changes_it(tmp_path: Path):
    """Leaving WAL and coming back leaves a ``-shm`` file that must never pass
    for current: the database header's counter joins the stamp."""
    path = tmp_path / "trip.sqlite"
    writer = connect(path, "wal")
    writer.execute("CREATE TABLE t (x)")
    with SQLiteChange(path) as change:
        in_wal = change.version()
        assert in_wal is not None
        writer.execute("PRAGMA journal_mode=delete")
        in_delete = change.version()
        assert in_delete not in (None, in_wal)
        writer.execute("PRAGMA journal_mode=wal")
        assert change.version() not in (None, in_wal, in_delete)
    writer.close()


def test_fork_child_reads_the_file_not_the_parent(
    watched: tuple[SQLiteChange, sqlite3.Connection], database: tuple[Path, str]
):
    change, _ = watched
    before = change.version()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a commit of its own, seen through the inherited watcher
        try:
            os.close(read)
            writer = sqlite3.connect(database[0], isolation_level=None, timeout=10)
            writer.execute("INSERT INTO t VALUES (3)")
            writer.close()
            ok = change.version() not in (None, before)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert change.version() not in (None, before)  # and the parent sees it too


# -- untrusted: None, so the caller asks the database -------------------------


def test_in_memory_has_no_watcher():
    assert SQLiteChange.for_connection(sqlite3.connect(":memory:")) is None
    assert SQLiteChange.for_connection(sqlite3.connect("")) is None


def test_missing_file(tmp_path: Path):
    with SQLiteChange(tmp_path / "absent.sqlite") as change:
        assert change.version() is None


def test_empty_and_short_files(tmp_path: Path):
    path = tmp_path / "short.sqlite"
    path.write_bytes(b"")
    with SQLiteChange(path) as change:
        assert change.version() is None
        path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)  # 36 bytes
        assert change.version() is None


def test_not_a_database(tmp_path: Path):
    path = tmp_path / "text.sqlite"
    path.write_bytes(b"x" * 4096)
    with SQLiteChange(path) as change:
        assert change.version() is None


def test_unknown_journal_mode(tmp_path: Path):
    path = tmp_path / "future.sqlite"
    connect(path).execute("CREATE TABLE t (x)")
    data = bytearray(path.read_bytes())
    data[18] = data[19] = 3  # a format version this code does not know
    path.write_bytes(bytes(data))
    with SQLiteChange(path) as change:
        assert change.version() is None


def wal_files(tmp_path: Path) -> Path:
    """A WAL database file with a hand-made ``-shm`` beside it."""
    path = tmp_path / "forged.sqlite"
    writer = connect(path, "wal")
    writer.execute("CREATE TABLE t (x)")
    writer.close()  # the last connection: SQLite removes -wal and -shm
    return path


def forge_shm(path: Path, first: bytes, second: bytes) -> None:
    Path(f"{path}-shm").write_bytes(first + second + b"\x00" * 40)


def header(change: int, is_init: int = 1) -> bytes:
    version = (3007000).to_bytes(4, sys.byteorder)
    body = version + b"\x00" * 4 + change.to_bytes(4, sys.byteorder) + bytes([is_init])
    return body + b"\x00" * (WAL_HEADER - len(body))


def test_wal_index_copies_that_differ_are_a_torn_read(tmp_path: Path):
    path = wal_files(tmp_path)
    forge_shm(path, header(5), header(6))
    with SQLiteChange(path) as change:
        assert change.version() is None


def test_wal_index_not_initialised(tmp_path: Path):
    path = wal_files(tmp_path)
    forge_shm(path, header(5, is_init=0), header(5, is_init=0))
    with SQLiteChange(path) as change:
        assert change.version() is None


def test_wal_index_unknown_version(tmp_path: Path):
    path = wal_files(tmp_path)
    forged = b"\x01\x02\x03\x04" + header(5)[4:]
    forge_shm(path, forged, forged)
    with SQLiteChange(path) as change:
        assert change.version() is None


def test_wal_without_shm_file(tmp_path: Path):
    path = wal_files(tmp_path)
    assert not Path(f"{path}-shm").exists()
    with SQLiteChange(path) as change:
        assert change.version() is None


def test_replaced_file_is_never_trusted_again(tmp_path: Path):
    path = tmp_path / "replaced.sqlite"
    other = tmp_path / "other.sqlite"
    connect(path).execute("CREATE TABLE t (x)")
    connect(other).execute("CREATE TABLE t (x)")
    with SQLiteChange(path) as change:
        assert change.version() is not None
        os.replace(other, path)
        change._stat_at -= change.recheck  # the next look at the path is due
        assert change.version() is None
        assert change.version() is None


def test_the_path_is_looked_at_once_per_recheck_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "looked.sqlite"
    connect(path).execute("CREATE TABLE t (x)")
    looks = []
    real = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: looks.append(p) or real(p, *a, **k))
    with SQLiteChange(path) as change:
        for _ in range(100):
            assert change.version() is not None
        assert len(looks) == 1
        change._stat_at -= change.recheck
        change.version()
        assert len(looks) == 2


def test_closed_watcher(tmp_path: Path):
    path = tmp_path / "closed.sqlite"
    connect(path).execute("CREATE TABLE t (x)")
    change = SQLiteChange(path)
    assert change.version() is not None
    change.close()
    assert change.version() is None
    change.close()  # twice is fine


# -- the request path under revocations from other processes ------------------

WRITER = Path(__file__).with_name("sqlitechange_writer.py")


def stress(tmp_path: Path, mode: str, revocations: int, seconds: float) -> None:
    """The test process authenticates in a loop (the library's request path,
    its row cache trusting the file's stamp) while two other processes revoke
    tokens, one through the library and one with plain SQL, and commit noise
    in between. Each writer prints a token's number only after its
    revocation committed; the very next request with that token must fail."""
    from helpers import bearer
    from helpers import make_app

    from flask_accesstokens import AccessTokens

    path = tmp_path / "stress.sqlite"
    url = f"sqlite:///{path}"
    app, db, tokens = make_app(url)
    with app.app_context():
        db.create_all()
        connect(path, mode).close()
        made = [
            tokens.create_token(
                name=f"t{i}", workspace="acme", repository="api", scopes=["repository"]
            )
            for i in range(2 * revocations)
        ]
    ids = [m.token.id for m in made]
    headers = [bearer(m.secret) for m in made]
    client = app.test_client()
    lookup = Pipeline.of(app).store
    writers = [
        subprocess.Popen(
            [sys.executable, str(WRITER), kind, url, str(seconds), *ids[start::2]],
            stdout=subprocess.PIPE,
            cwd=WRITER.parent,
        )
        for start, kind in enumerate(["library", "sql"])
    ]
    offsets = {writers[0].stdout.fileno(): 0, writers[1].stdout.fileno(): 1}  # type: ignore[union-attr]
    revoked: set[int] = set()
    checked = 0
    stamped = 0
    buffers = {fd: b"" for fd in offsets}
    deadline = time.monotonic() + seconds + 60
    try:
        with app.app_context():
            while buffers and time.monotonic() < deadline:
                ready, _, _ = select.select(list(buffers), [], [], 0)
                for fd in ready:
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        del buffers[fd]
                        continue
                    buffers[fd] += chunk
                    *lines, buffers[fd] = buffers[fd].split(b"\n")
                    for line in lines:
                        index = ids.index(line.decode())
                        revoked.add(index)
                        # The very next lookup of this token, after its commit:
                        status = client.get("/repositories/acme/api", headers=headers[index])
                        assert status.status_code == 401, f"stale accept of token {index}"
                        checked += 1
                # Keep every live token's row cached, so a revocation has a
                # cache to invalidate; a revoked token must never pass again.
                index = random.randrange(len(ids))
                status = client.get("/repositories/acme/api", headers=headers[index]).status_code
                if index in revoked:
                    assert status == 401, f"stale accept of token {index}"
                change = lookup._change
                if change and change.version() is not None:
                    stamped += 1
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            writer.stdout.close()  # type: ignore[union-attr]
        with app.app_context():
            AccessTokens.dispose_connections(app)
            db.engine.dispose()
    assert checked == 2 * revocations
    assert stamped > 0, "the file's stamp was never trusted: only the fallback was tested"


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_revocation_from_other_processes_is_seen_next_request(tmp_path: Path, mode: str):
    stress(tmp_path, mode, revocations=8, seconds=2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "wal"])
def test_revocation_stress_long(tmp_path: Path, mode: str):
    stress(tmp_path, mode, revocations=60, seconds=20)
