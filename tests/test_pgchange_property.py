"""The PostgreSQL property the row cache stands on, checked before anything
relies on it: a notification committed before a listener's round trip starts
reaches the listener before that round trip's answer.

Checked with psycopg 3, the driver the cache uses, in the way it uses it: a
notify handler on an autocommit connection, fed while ``execute`` reads the
answer. Also the two facts the listener's self-check adds: its own
notification, sent in a statement, arrives with that statement's answer; and
a notification committed while the listener is busy in a statement arrives by
the end of its next one.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.services import needs_postgresql
from tests.services import require_postgresql

psycopg = pytest.importorskip("psycopg")

pytestmark = needs_postgresql


def _connect(channel: str) -> tuple[object, list[str]]:
    url = require_postgresql().replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(url, autocommit=True)
    seen: list[str] = []
    conn.add_notify_handler(lambda n: seen.append(n.payload))
    if channel:
        conn.execute(f"LISTEN {channel}")
    return conn, seen


def test_committed_before_the_round_trip_arrives_with_its_answer() -> None:
    listener, seen = _connect("at_property")
    notifier, _ = _connect("")
    try:
        for i in range(1000):
            notifier.execute("SELECT pg_notify('at_property', %s)", (str(i),))  # committed
            listener.execute("SELECT 1")
            assert seen and seen[-1] == str(i), f"notification {i} missing after the round trip"
        assert seen == [str(i) for i in range(1000)]
    finally:
        listener.close()
        notifier.close()


def test_concurrent_commits_are_never_late() -> None:
    """Another thread commits notifications back to back, noting when each
    commit returned; the listener notes when each round trip started. Every
    notification whose commit returned before a round trip started must have
    been seen by the end of that round trip."""
    listener, seen = _connect("at_race")
    notifier, _ = _connect("")
    committed: list[tuple[float, str]] = []
    stop = threading.Event()

    def notify() -> None:
        i = 0
        while not stop.is_set():
            notifier.execute("SELECT pg_notify('at_race', %s)", (str(i),))
            committed.append((time.monotonic(), str(i)))
            i += 1

    thread = threading.Thread(target=notify)
    thread.start()
    checked = 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            started = time.monotonic()
            before = [payload for at, payload in list(committed) if at < started]
            listener.execute("SELECT 1")
            received = set(seen)
            missing = [p for p in before if p not in received]
            assert not missing, f"committed before the round trip, not seen after it: {missing}"
            checked += len(before)
    finally:
        stop.set()
        thread.join()
        listener.close()
        notifier.close()
    assert checked > 100


def test_own_notification_arrives_with_the_statement() -> None:
    listener, seen = _connect("at_self")
    try:
        for i in range(200):
            listener.execute("SELECT pg_notify('at_self', %s)", (str(i),))
            assert seen[-1:] == [str(i)]
    finally:
        listener.close()


def test_committed_while_busy_arrives_by_the_next_answer() -> None:
    listener, seen = _connect("at_busy")
    notifier, _ = _connect("")
    try:
        for i in range(20):
            query = ("SELECT pg_notify('at_busy', %s)", (str(i),))
            t = threading.Timer(0.01, notifier.execute, query)
            t.start()
            listener.execute("SELECT pg_sleep(0.05)")
            t.join()
            listener.execute("SELECT 1")
            assert str(i) in seen
    finally:
        listener.close()
        notifier.close()
