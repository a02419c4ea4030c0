"""Overlapping rotations of one token cannot both succeed (hardening, class 7).

"Overlapping" means the second read the token before the first committed.
Rotation is a compare-and-set on the token's generation: the loser gets
``TokenConflict`` (409 on the JSON API), and the secret the winner returned
is the one that works. Rotations that do not overlap keep working.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import TokenConflict
from flask_accesstokens import TokenEvent
from flask_accesstokens.models import as_utc
from flask_accesstokens.models import TokenSecret
from flask_accesstokens.models import utcnow
from flask_accesstokens.service import TokenService

REPO = "/repositories/acme/api"
API = "/api/repositories/acme/api/access-tokens"
ALICE = {"X-Test-User": "alice"}
WAIT = 20  # seconds; only reached when something is broken


@contextmanager
def worker(database_uri: str) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    """An app on the shared database, standing in for one worker process."""
    app, db, tokens = make_app(database_uri)

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return request.headers.get("X-Test-User")

    try:
        yield app, db, tokens
    finally:
        with app.app_context():
            db.session.remove()
            AccessTokens.dispose_connections(app)
            db.engine.dispose()


def make_token(app: Flask, tokens: AccessTokens) -> tuple[str, str]:
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        return new.token.id, new.secret


def state(app: Flask, db: SQLAlchemy, token_id: str) -> tuple[int, list[str], int]:
    """The generation, the digests of secrets still current, and how many
    rotations were audited."""
    with app.app_context():
        db.session.remove()
        generation = db.session.get(AccessToken, token_id).generation
        current = db.session.scalars(
            sa.select(TokenSecret.digest).where(
                TokenSecret.token_id == token_id, TokenSecret.valid_until.is_(None)
            )
        ).all()
        rotations = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(TokenEvent)
            .where(TokenEvent.token_id == token_id, TokenEvent.action == "rotated")
        )
        db.session.remove()
        return generation, list(current), rotations or 0


def digest_of(app: Flask, secret: str) -> str:
    with app.app_context():
        return AccessTokens.service().state.digester.digest(secret)


@contextmanager
def paused_after_first_read(
    monkeypatch: pytest.MonkeyPatch, thread_name: str
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The thread called ``thread_name`` stops right after it first reads the
    token (``read`` is set) until ``go`` is set."""
    read, go = threading.Event(), threading.Event()
    original: Callable[..., Any] = TokenService.get
    paused = [False]

    def get(self: TokenService, token_id: str) -> Any:
        token = original(self, token_id)
        if threading.current_thread().name == thread_name and not paused[0]:
            paused[0] = True
            read.set()
            assert go.wait(WAIT), "the test never let the paused rotation go on"
        return token

    monkeypatch.setattr(TokenService, "get", get)
    yield read, go


def run(name: str, target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def body() -> None:
        try:
            result.append(target())
        except BaseException as e:  # handed to the test's thread
            result.append(e)

    thread = threading.Thread(target=body, name=name)
    thread.start()
    return thread, result


def test_overlapping_rotations_through_the_python_api(
    database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, other):
        token_id, _ = make_token(first, tokens)
        start = state(first, db, token_id)[0]

        def rotate_on(app: Flask, ext: AccessTokens) -> Any:
            with app.app_context():
                return ext.rotate_token(token_id, rotated_by="bob")

        with paused_after_first_read(monkeypatch, "late") as (read, go):
            late, late_result = run("late", lambda: rotate_on(second, other))
            assert read.wait(WAIT)
            # The other worker rotates and commits while "late" holds its read.
            winner = rotate_on(first, tokens)
            go.set()
            late.join(WAIT)
        assert winner is not None
        assert len(late_result) == 1 and isinstance(late_result[0], TokenConflict), late_result
        generation, current, rotations = state(first, db, token_id)
        assert generation == start + 1 and rotations == 1
        assert current == [digest_of(first, winner.secret)]
        assert first.test_client().get(REPO, headers=bearer(winner.secret)).status_code == 200
        # Afterwards, rotations that do not overlap work as always, on either worker.
        again = rotate_on(second, other)
        assert again is not None
        assert second.test_client().get(REPO, headers=bearer(again.secret)).status_code == 200
        assert state(first, db, token_id)[0] == start + 2


def test_overlapping_rotations_through_the_json_api(
    database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, _):
        token_id, old = make_token(first, tokens)
        url = f"{API}/{token_id}/rotate"

        with paused_after_first_read(monkeypatch, "late") as (read, go):
            late, late_result = run(
                "late", lambda: second.test_client().post(url, json={}, headers=ALICE)
            )
            assert read.wait(WAIT)
            winner = first.test_client().post(url, json={}, headers=ALICE)
            go.set()
            late.join(WAIT)
        assert winner.status_code == 201, winner.json
        loser = late_result[0]
        assert loser.status_code == 409, loser.json
        assert loser.json["type"] == "error" and "token" not in loser.json
        assert state(first, db, token_id)[1:] == ([digest_of(first, winner.json["token"])], 1)
        assert (
            first.test_client().get(REPO, headers=bearer(winner.json["token"])).status_code == 200
        )
        # The winner's secret is the one that works; the old one is retired
        # (checked last: presenting it counts as reuse and revokes).
        assert first.test_client().get(REPO, headers=bearer(old)).status_code == 401


def test_a_rotation_that_read_before_a_revocation_does_not_revive_it(
    database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, _):
        token_id, secret = make_token(first, tokens)
        url = f"{API}/{token_id}/rotate"
        with paused_after_first_read(monkeypatch, "late") as (read, go):
            late, late_result = run(
                "late", lambda: second.test_client().post(url, json={}, headers=ALICE)
            )
            assert read.wait(WAIT)
            with first.app_context():
                tokens.revoke_token(token_id, revoked_by="alice")
            go.set()
            late.join(WAIT)
        assert late_result[0].status_code == 409
        assert state(first, db, token_id)[2] == 0
        assert first.test_client().get(REPO, headers=bearer(secret)).status_code == 401


def test_sequential_rotations_keep_working(database_uri: str) -> None:
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, _):
        token_id, _ = make_token(first, tokens)
        url = f"{API}/{token_id}/rotate"
        secrets = []
        for n in range(6):
            app = (first, second)[n % 2]
            response = app.test_client().post(url, json={"grace": 60}, headers=ALICE)
            assert response.status_code == 201, response.json
            secrets.append(response.json["token"])
        generation, current, rotations = state(first, db, token_id)
        assert rotations == 6 and current == [digest_of(first, secrets[-1])]
        # Within the grace window the previous secret works too.
        client = first.test_client()
        assert client.get(REPO, headers=bearer(secrets[-1])).status_code == 200
        assert client.get(REPO, headers=bearer(secrets[-2])).status_code == 200


@pytest.mark.parametrize("threads", [8])
def test_concurrent_rotations_succeed_once_per_generation(database_uri: str, threads: int) -> None:
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, _):
        token_id, _ = make_token(first, tokens)
        start = state(first, db, token_id)[0]
        url = f"{API}/{token_id}/rotate"
        barrier = threading.Barrier(threads)
        answers: list[Any] = []

        def rotate(app: Flask) -> None:
            client = app.test_client()
            barrier.wait(WAIT)
            answers.append(client.post(url, json={}, headers=ALICE))

        workers = [
            threading.Thread(target=rotate, args=((first, second)[n % 2],)) for n in range(threads)
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(WAIT * 2)
        statuses = sorted(a.status_code for a in answers)
        assert len(statuses) == threads
        assert set(statuses) <= {201, 409}, [a.json for a in answers]
        won = [a.json["token"] for a in answers if a.status_code == 201]
        assert won, statuses
        generation, current, rotations = state(first, db, token_id)
        # One success per generation: every success moved it on by one.
        assert generation == start + len(won) and rotations == len(won)
        # Exactly one secret is current, and it is one a success returned:
        # the last to commit.
        assert len(current) == 1 and current[0] in {digest_of(first, s) for s in won}
        live = next(s for s in won if digest_of(first, s) == current[0])
        assert first.test_client().get(REPO, headers=bearer(live)).status_code == 200
        assert second.test_client().get(REPO, headers=bearer(live)).status_code == 200


def test_rotation_grace_of_the_loser_changes_nothing(
    database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loser asked for a long grace; the winner for none. The old secret
    # must not be kept alive by the rotation that lost.
    with worker(database_uri) as (first, db, tokens), worker(database_uri) as (second, _, other):
        token_id, _ = make_token(first, tokens)

        def late_rotation() -> Any:
            with second.app_context():
                return other.rotate_token(token_id, grace=timedelta(minutes=30))

        with paused_after_first_read(monkeypatch, "late") as (read, go):
            late, late_result = run("late", late_rotation)
            assert read.wait(WAIT)
            with first.app_context():
                winner = tokens.rotate_token(token_id, grace=timedelta(0))
            go.set()
            late.join(WAIT)
        assert isinstance(late_result[0], TokenConflict)
        assert winner is not None
        with first.app_context():
            db.session.remove()
            valid = db.session.scalars(
                sa.select(TokenSecret.valid_until).where(TokenSecret.token_id == token_id)
            ).all()
            db.session.remove()
        # The old secret's window is the winner's (0), not the loser's 30 minutes.
        assert sorted(v is None for v in valid) == [False, True]
        retired = [as_utc(v) for v in valid if v is not None]
        assert retired[0] <= utcnow()
