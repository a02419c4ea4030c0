"""Management request bodies are bounded (hardening, class 5).

Over 64 KiB is 413, with a declared ``Content-Length`` or with a streamed
(chunked) body that declares none, and no more than the bound and one byte
is ever read from the client. A body of exactly 64 KiB is read as usual.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from flask import Flask
from flask import request
from flask_sqlalchemy import SQLAlchemy
from werkzeug.test import EnvironBuilder
from werkzeug.test import run_wsgi_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.api import MAX_BODY

REPO = "/api/repositories/acme/api/access-tokens"


@pytest.fixture
def managed(tokens: AccessTokens) -> AccessTokens:
    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return request.headers.get("X-Test-User")

    return tokens


class CountingInput(io.RawIOBase):
    """A client's body as the server hands it over: counts what the app
    reads, and (``chunk``) returns at most that many bytes per read, as a
    socket may."""

    def __init__(self, data: bytes, chunk: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self.chunk = chunk
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer) if self.chunk is None else min(len(buffer), self.chunk)
        data = self._data.read(size)
        buffer[: len(data)] = data
        self.read_bytes += len(data)
        return len(data)


def post(
    app: Flask,
    path: str,
    body: bytes,
    *,
    declared: bool = True,
    chunk: int | None = None,
) -> tuple[Any, CountingInput]:
    stream = CountingInput(body, chunk)
    headers = {"X-Test-User": "alice", "Content-Type": "application/json"}
    if not declared:
        headers["Transfer-Encoding"] = "chunked"
    environ = EnvironBuilder(path=path, method="POST", headers=headers).get_environ()
    environ["wsgi.input"] = stream
    if declared:
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True  # the server de-chunks, as gunicorn does
    return call(app, environ), stream


def call(app: Flask, environ: dict[str, Any]) -> Any:
    """Run the app as a server would, on this exact environ."""
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    return app.response_class(app_iter, status, headers)


def padded(value: dict[str, Any], size: int) -> bytes:
    """Valid JSON of exactly ``size`` bytes: the object, then spaces."""
    raw = json.dumps(value).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def count(db: SQLAlchemy) -> int:
    db.session.remove()
    return db.session.query(AccessToken).count()


def a_token(managed: AccessTokens) -> str:
    new = managed.create_token(name="CI", workspace="acme", repository="api", scopes=["repository"])
    return new.token.id


def rotate_path(token_id: str) -> str:
    return f"{REPO}/{token_id}/rotate"


CREATE = {"name": "CI", "scopes": ["repository"]}
MODES = [
    pytest.param({"declared": True}, id="content-length"),
    pytest.param({"declared": False}, id="chunked"),
    pytest.param({"declared": True, "chunk": 1000}, id="content-length-short-reads"),
    pytest.param({"declared": False, "chunk": 1000}, id="chunked-short-reads"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [MAX_BODY + 1, MAX_BODY + 4096, 20 * 1024 * 1024])
def test_create_over_the_bound_is_413_and_reads_no_further(
    app: Flask, db: SQLAlchemy, managed: AccessTokens, mode: dict[str, Any], size: int
) -> None:
    response, stream = post(app, REPO, padded(CREATE, size), **mode)
    assert response.status_code == 413, response.json
    assert response.json["type"] == "error"
    assert stream.read_bytes <= MAX_BODY + 1
    assert count(db) == 0


@pytest.mark.parametrize("mode", MODES)
def test_rotate_over_the_bound_is_413_and_reads_no_further(
    app: Flask, db: SQLAlchemy, managed: AccessTokens, mode: dict[str, Any]
) -> None:
    token_id = a_token(managed)
    response, stream = post(app, rotate_path(token_id), padded({"grace": 0}, 5 * MAX_BODY), **mode)
    assert response.status_code == 413, response.json
    assert stream.read_bytes <= MAX_BODY + 1
    db.session.remove()
    assert managed.get_token(token_id).rotated_at is None


@pytest.mark.parametrize("mode", MODES)
def test_exactly_the_bound_is_accepted(
    app: Flask, db: SQLAlchemy, managed: AccessTokens, mode: dict[str, Any]
) -> None:
    response, stream = post(app, REPO, padded(CREATE, MAX_BODY), **mode)
    assert response.status_code == 201, response.json
    assert stream.read_bytes == MAX_BODY
    token_id = response.json["id"]
    response, _ = post(app, rotate_path(token_id), padded({"grace": 0}, MAX_BODY), **mode)
    assert response.status_code == 201, response.json
    assert count(db) == 1


def test_a_bound_sized_body_of_bad_content_is_400_not_413(
    app: Flask, db: SQLAlchemy, managed: AccessTokens
) -> None:
    body = json.dumps({**CREATE, "name": "x" * (MAX_BODY - 100)}).encode()
    body += b" " * (MAX_BODY - len(body))
    response, _ = post(app, REPO, body)
    assert response.status_code == 400
    assert "name" in response.json["error"]["fields"]
    response, _ = post(app, REPO, b"[" * MAX_BODY)  # deeply nested: no RecursionError 500
    assert response.status_code == 400
    assert count(db) == 0


def test_a_lying_content_length_reads_no_further(
    app: Flask, db: SQLAlchemy, managed: AccessTokens
) -> None:
    # The client declares a small body and sends a huge one: only the
    # declared bytes are read (and they hold a whole JSON object here).
    body = padded(CREATE, 10 * MAX_BODY)
    stream = CountingInput(body)
    environ = EnvironBuilder(
        path=REPO,
        method="POST",
        headers={"X-Test-User": "alice", "Content-Type": "application/json"},
    ).get_environ()
    environ["wsgi.input"] = stream
    environ["CONTENT_LENGTH"] = "100"
    response = call(app, environ)
    # What was declared is the body: the token made is the one in it.
    assert response.status_code == 201
    assert stream.read_bytes == 100
    assert count(db) == 1


# -- the admin pages' forms --------------------------------------------------------------


def test_admin_form_bodies_are_bounded(database_uri: str) -> None:
    from test_admin import create_form
    from test_admin import make_admin_app
    from test_admin import running

    from flask_accesstokens.admin import MAX_FORM_BODY

    app, db, tokens = make_admin_app(database_uri)
    with running(app, db):
        client = app.test_client()
        client.get("/test-login?user=alice")
        url = "/settings/repositories/acme/api/access-tokens/new"
        base = {"name": "CI", "scopes": "repository"}
        form = create_form(client, url.removesuffix("/new"))
        big = {**form, "name": "x" * (2 * MAX_FORM_BODY)}
        assert client.post(url, data=big).status_code == 413
        upload = {**form, "file": (io.BytesIO(b"x" * (4 * MAX_FORM_BODY)), "big.bin")}
        response = client.post(url, data=upload, content_type="multipart/form-data")
        assert response.status_code == 413
        assert response.headers.get("X-Frame-Options") == "SAMEORIGIN"
        # Streamed without a length: nothing past the bound is read (Werkzeug
        # ends the stream there, so the cut-off form fails its CSRF check).
        body = b"name=" + b"x" * (4 * MAX_FORM_BODY)
        stream = CountingInput(body)
        environ = EnvironBuilder(
            path=url, method="POST", content_type="application/x-www-form-urlencoded"
        ).get_environ()
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])  # signed in
        assert cookie is not None
        environ["HTTP_COOKIE"] = f"{cookie.key}={cookie.value}"
        environ["wsgi.input"] = stream
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
        assert call(app, environ).status_code in (400, 413)
        assert stream.read_bytes <= MAX_FORM_BODY + 1
        assert tokens.list_tokens(workspace="acme", repository="api") == []
        # A normal form still works.
        done = client.post(url, data={**create_form(client, url.removesuffix("/new")), **base})
        assert done.status_code == 200
        assert len(tokens.list_tokens(workspace="acme", repository="api")) == 1
