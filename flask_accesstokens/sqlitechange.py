"""Has anyone committed to this SQLite database since I last looked?

Answered from SQLite's documented file formats, without running a statement
(https://www.sqlite.org/fileformat2.html):

- rollback-journal modes (DELETE, TRUNCATE, PERSIST, MEMORY, OFF): the file
  change counter, the 4-byte big-endian integer at offset 24 of the database
  header, which every committing writer increments before it unlocks;
- WAL mode (header bytes 18 and 19 both 2): the WAL-index header at the start
  of the ``-shm`` file, two copies of 48 bytes that a committing writer
  rewrites (second copy first), with ``iChange`` incremented, ``mxFrame`` and
  the frame checksum advanced and, when the log restarts, new salts. This is
  what SQLite itself reads to notice another connection's commit.

:meth:`SQLiteChange.version` returns an opaque value that changes whenever a
commit is published, or None whenever the answer cannot be trusted; the
caller then asks the database (``PRAGMA data_version``). It never says
"unchanged" when it cannot tell.

How a cache uses it (what ``lookup.py`` does)::

    before = probe.version()          # 1. read the version first
    rows = run_the_query()            # 2. then read the data
    if before is not None and probe.version() == before:
        cache[before] = rows          # 3. keep them under the *earlier* value

Why this order: the query starts after ``before`` was read, so it sees every
commit published up to ``before`` and maybe some later ones. Rows are kept
under ``before``; any commit after it changes the version, so the next
request misses and reads again. A commit racing the query costs one extra
miss, never a stale hit. The second read (step 3) refuses to cache across a
commit that raced the query, and across a torn or uncommitted value: in
rollback mode a writer puts page 1 on disk before its commit point, so a
read without a lock can see a counter that a crash then rolls back, and
that number would be reused by the next commit.

Limits, by design:

- The caller keeps a SQLite connection open on the same database while it
  uses this (the lookup's own connection). In WAL mode that connection's
  shared-memory lock stops any other process from resetting the ``-shm`` file
  or leaving WAL mode under the mapping. A database file replaced on disk
  (another inode at the path) is reported untrusted from then on: the open
  connection still reads the old file, so the caller should reconnect.
- Writes that bypass SQLite (copying a file over the database in place) are
  not commits and are not promised to be seen.
- SQLite's unix VFS uses POSIX advisory locks, which a process loses on a file
  when it closes *any* descriptor of that file. Descriptors are therefore
  opened once and closed only by :meth:`close`: call it when no connection in
  this process is using the database, never per request.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import sys
import time

#: Every SQLite 3 database file begins with these 16 bytes.
MAGIC = b"SQLite format 3\x00"
#: The database header: magic, page size, versions (18, 19), change counter
#: (24) and the in-header size and freelist fields SQLite itself compares.
DB_HEADER = 40
#: One copy of the WAL-index header; two copies lead the ``-shm`` file.
WAL_HEADER = 48
#: ``iVersion`` of the WAL-index format, stored in native byte order.
WAL_INDEX_VERSION = (3007000).to_bytes(4, sys.byteorder)
ROLLBACK = b"\x01\x01"
WAL = b"\x02\x02"


class _Mapping:
    """A read-only mapping of the start of one file, with its descriptor
    held open so that closing it never races SQLite's locks."""

    def __init__(self, path: str, length: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(self.fd)
        self.identity = (st.st_dev, st.st_ino)
        self.length = length
        self.map: mmap.mmap | None = None

    def view(self) -> mmap.mmap | None:
        """The mapping, made on first use once the file is long enough."""
        if self.map is None:
            try:
                self.map = mmap.mmap(self.fd, self.length, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # shorter than length, or cannot map
                return None
        return self.map

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
        os.close(self.fd)


class SQLiteChange:
    """Watches one database file for commits by any connection or process.

    Not for in-memory databases: use :meth:`for_connection`, which says None
    for them. Safe across ``fork``: every call checks that the path still
    names the mapped file, and the mappings are shared, so a child sees
    what the file holds, not what its parent saw.

    .. versionadded:: 0.2
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._db: _Mapping | None = None
        self._shm: _Mapping | None = None
        self._replaced = False
        self._closed = False
        #: Seconds between looks for another file at the path.
        self.recheck = 1.0
        self._stat_at = -1.0

    @classmethod
    def for_connection(cls, conn: sqlite3.Connection) -> SQLiteChange | None:
        """A watcher for the main database of ``conn``, or None when it has no
        file (in-memory or temporary). Runs one statement, once."""
        for _, name, file in conn.execute("PRAGMA database_list").fetchall():
            if name == "main":
                return cls(file) if file else None
        return None

    def version(self) -> bytes | None:
        """An opaque value that differs after any commit, or None when this
        cannot be known without asking the database."""
        if self._replaced or self._closed:
            return None
        try:
            db = self._db
            if db is None:
                db = self._db = _Mapping(self.path, 100)
            now = time.monotonic()
            if now - self._stat_at >= self.recheck:
                # Another file at the path is looked for at most every
                # ``recheck`` seconds: a system call per request costs more
                # than the rest of this check.
                self._stat_at = now
                st = os.stat(self.path)
            else:
                st = None
            if st is not None and (st.st_dev, st.st_ino) != db.identity:
                # Another file has this path now (restored, moved over,
                # deleted): the caller's connection still reads the old one,
                # so nothing here can vouch for either any more.
                self._replaced = True
                return None
            view = db.view()
            if view is None:
                return None
            head = view[:DB_HEADER]
            if head[:16] != MAGIC:
                return None
            mode = head[18:20]
            if mode == ROLLBACK:
                return head
            if mode != WAL:
                return None  # a format we do not know: never guess
            return self._wal(head)
        except (OSError, ValueError):  # missing file, closed mapping, a race
            return None

    def _wal(self, head: bytes) -> bytes | None:
        shm = self._shm
        if shm is None:
            shm = self._shm = _Mapping(self.path + "-shm", 2 * WAL_HEADER)
        view = shm.view()
        if view is None:
            return None
        both = view[: 2 * WAL_HEADER]
        first = both[:WAL_HEADER]
        if first != both[WAL_HEADER:]:
            return None  # a writer is between its two copies: a torn read
        if first[:4] != WAL_INDEX_VERSION or not first[12]:
            return None  # not initialised, or a WAL-index we do not know
        # The database header joins in: a trip out of WAL and back bumps its
        # change counter, so a -shm left behind can never pass for current.
        return head + first

    def close(self) -> None:
        """Unmap and close. Closing a descriptor drops this process's SQLite
        locks on that file: only call it when the database is not in use."""
        self._closed = True
        for mapping in (self._db, self._shm):
            if mapping is not None:
                mapping.close()
        self._db = self._shm = None

    def __enter__(self) -> SQLiteChange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
