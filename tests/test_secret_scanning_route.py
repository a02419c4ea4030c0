"""``POST {prefix}/access-tokens/secret-scanning/<provider>``: real ECDSA
P-256 signatures checked against keys served over loopback HTTP, one keys
document per provider; what a genuine report revokes and answers, and that
anything else revokes nothing."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from werkzeug.test import EnvironBuilder
from werkzeug.test import run_wsgi_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import canary_tripped
from flask_accesstokens import Resource
from flask_accesstokens import token_leaked
from flask_accesstokens import tokenformat
from flask_accesstokens.models import utcnow
from flask_accesstokens.scanning import MAX_REPORT_BYTES
from flask_accesstokens.scanning import token_hash

GITHUB = "/api/access-tokens/secret-scanning/github"
GITLAB = "/api/access-tokens/secret-scanning/gitlab"


class KeyServer(ThreadingHTTPServer):
    """Serves a keys document per path (one per provider)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.documents: dict[str, bytes] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: KeyServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        document = self.server.documents.get(self.path)
        self.send_response(200 if document is not None else 404)
        body = document or b"{}"
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def keys_document(key_id: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return json.dumps(
        {"public_keys": [{"key_identifier": key_id, "key": pem.decode(), "is_current": True}]}
    ).encode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture(scope="module")
def github_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def gitlab_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def key_server(
    github_key: ec.EllipticCurvePrivateKey, gitlab_key: ec.EllipticCurvePrivateKey
) -> Iterator[KeyServer]:
    server = KeyServer()
    server.documents["/github/keys"] = keys_document("gh1", github_key)
    server.documents["/gitlab/keys"] = keys_document("gl1", gitlab_key)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def parts(database_uri: str, key_server: KeyServer) -> Iterator[tuple[Flask, SQLAlchemy, Any]]:
    app, db, tokens = make_app(
        database_uri,
        ACCESSTOKENS_SECRET_SCANNING_KEYS={
            "github": key_server.url("/github/keys"),
            "gitlab": key_server.url("/gitlab/keys"),
        },
    )

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        return "alice"

    with app.app_context():
        yield app, db, tokens
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


@pytest.fixture
def tokens(parts: tuple[Flask, SQLAlchemy, Any]) -> AccessTokens:
    return parts[2]  # type: ignore[no-any-return]


@pytest.fixture
def client(parts: tuple[Flask, SQLAlchemy, Any]) -> Any:
    return parts[0].test_client()


@pytest.fixture
def signals(parts: tuple[Flask, SQLAlchemy, Any]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    app = parts[0]

    def leaked(sender: Any, **kwargs: Any) -> None:
        seen.append(("leaked", kwargs))

    def tripped(sender: Any, **kwargs: Any) -> None:
        seen.append(("tripped", kwargs))

    with token_leaked.connected_to(leaked, app), canary_tripped.connected_to(tripped, app):
        yield seen


def report(*entries: tuple[str, str | None], source: bool = True) -> bytes:
    items = []
    for token, url in entries:
        item: dict[str, Any] = {"token": token, "type": "bbat_access_token", "url": url}
        if source:
            item["source"] = "content"
        items.append(item)
    return json.dumps(items).encode()


def post(
    client: Any,
    body: bytes,
    key: ec.EllipticCurvePrivateKey | None,
    key_id: str = "gh1",
    route: str = GITHUB,
    provider: str = "Github",
    signature: str | None = None,
    **headers: str,
) -> Any:
    sent = {"Content-Type": "application/json", **headers}
    if key is not None:
        sent[f"{provider}-Public-Key-Identifier"] = key_id
        sent[f"{provider}-Public-Key-Signature"] = signature or sign(key, body)
    return client.post(route, data=body, headers=sent)


def new(tokens: AccessTokens, name: str = "CI", **where: str) -> Any:
    where = where or {"repository": "api"}
    return tokens.create_token(name=name, workspace="acme", scopes=["repository"], **where)


URL = "https://github.com/octo/app/blob/1a2b3c/.env"


def test_genuine_report_revokes_and_answers(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    live = new(tokens)
    other = new(tokens, "other")
    unknown = tokenformat.generate("bbat")
    body = report((live.secret, URL), (unknown, None), ("not a token", None))
    response = post(client, body, github_key)
    assert response.status_code == 200
    assert response.get_json() == [
        {
            "token_hash": token_hash(live.secret),
            "token_type": "bbat_access_token",
            "label": "true_positive",
        },  # noqa: E501
        {
            "token_hash": token_hash(unknown),
            "token_type": "bbat_access_token",
            "label": "false_positive",
        },  # noqa: E501
        {
            "token_hash": token_hash("not a token"),
            "token_type": "bbat_access_token",
            "label": "false_positive",
        },  # noqa: E501
    ]
    record = tokens.get_token(live.token.id)
    assert record is not None and record.revoked_at is not None
    assert (record.revoked_by, record.leak_provider, record.leak_url) == (
        "secret scanning: github",
        "github",
        URL,
    )
    assert tokens.get_token(other.token.id).revoked_at is None  # type: ignore[union-attr]
    assert [(kind, kw["token"].id, kw["provider"], kw["url"]) for kind, kw in signals] == [
        ("leaked", live.token.id, "github", URL)
    ]
    # At once: the token no longer works.
    assert client.get("/repositories/acme/api", headers=bearer(live.secret)).status_code == 401
    (event,) = [e for e in tokens.audit_events(live.token.id) if e.action == "revoked"]
    assert event.detail == "leaked: github" and event.actor == "secret scanning: github"
    # The JSON API shows who revoked it, through which provider, and where it was found.
    shown = client.get(f"/api/repositories/acme/api/access-tokens/{live.token.id}").get_json()
    assert shown["leak_provider"] == "github" and shown["leak_url"] == URL
    assert shown["revoked_by"] == "secret scanning: github" and shown["state"] == "revoked"
    assert live.secret not in response.text


def test_same_report_twice_is_harmless(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    live = new(tokens)
    body = report((live.secret, URL), (live.secret, URL))
    first = post(client, body, github_key)
    revoked_at = tokens.get_token(live.token.id).revoked_at  # type: ignore[union-attr]
    second = post(client, body, github_key)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert [entry["label"] for entry in first.get_json()] == ["true_positive"] * 2
    assert len(signals) == 1
    assert tokens.get_token(live.token.id).revoked_at == revoked_at  # type: ignore[union-attr]
    revocations = [e for e in tokens.audit_events(live.token.id) if e.action == "revoked"]
    assert len(revocations) == 1


def test_revoked_expired_and_rotated_out_are_true_positives(
    client: Any,
    parts: tuple[Flask, SQLAlchemy, Any],
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    db = parts[1]
    revoked = new(tokens, "revoked")
    tokens.revoke_token(revoked.token.id, revoked_by="alice")
    expired = new(tokens, "expired")
    db.session.execute(
        sa.text("UPDATE accesstokens_token SET expires_at = :at WHERE id = :id"),
        {"at": (utcnow() - timedelta(days=1)).replace(tzinfo=None), "id": expired.token.id},
    )
    db.session.commit()
    rotated = new(tokens, "rotated")
    current = tokens.rotate_token(rotated.token.id)
    assert current is not None
    body = report((revoked.secret, URL), (expired.secret, URL), (rotated.secret, URL))
    response = post(client, body, github_key)
    assert [e["label"] for e in response.get_json()] == ["true_positive"] * 3
    # The first revocation's record stays.
    record = tokens.get_token(revoked.token.id)
    assert record is not None and record.revoked_by == "alice" and record.leak_provider is None
    # The rotated-out secret revokes its token: the current secret stops too.
    record = tokens.get_token(rotated.token.id)
    assert record is not None and record.revoked_by == "secret scanning: github"
    assert client.get("/repositories/acme/api", headers=bearer(current.secret)).status_code == 401
    assert {kw["token"].id for _, kw in signals} == {expired.token.id, rotated.token.id}


def test_pruned_token_is_a_false_positive(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    gone = new(tokens)
    tokens.revoke_token(gone.token.id)
    assert len(tokens.prune_tokens(timedelta(0))) == 1
    response = post(client, report((gone.secret, URL)), github_key)
    assert response.status_code == 200
    assert response.get_json()[0]["label"] == "false_positive"
    assert signals == []


def test_canary_stays_armed_and_raises_the_alarm(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    canary = tokens.create_canary(name="canary", workspace="acme", repository="api")
    response = post(client, report((canary.secret, URL), (canary.secret, URL)), github_key)
    assert [e["label"] for e in response.get_json()] == ["true_positive"] * 2
    record = tokens.get_token(canary.token.id)
    assert record is not None and record.revoked_at is None and record.leak_provider is None
    assert [(kind, kw["token"].id, kw["client"]) for kind, kw in signals] == [
        ("tripped", canary.token.id, "github")
    ]
    events = [e for e in tokens.audit_events(canary.token.id) if e.action == "canary_tripped"]
    assert [(e.client, e.detail) for e in events] == [("github", "reported by github")]
    # Revoked, it is disarmed: still issued here, but no alarm.
    tokens.revoke_token(canary.token.id)
    signals.clear()
    again = post(client, report((canary.secret, URL)), github_key)
    assert again.get_json()[0]["label"] == "true_positive" and signals == []


def test_gitlab_has_its_own_keys_and_headers(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    gitlab_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    live = new(tokens)
    body = report((live.secret, None), source=False)
    # GitHub's key, or GitHub's headers, do not sign for GitLab.
    assert post(client, body, github_key, "gh1", GITLAB, "Gitlab").status_code == 400
    assert post(client, body, gitlab_key, "gl1", GITLAB, "Github").status_code == 400
    assert post(client, body, gitlab_key, "gl1", GITHUB, "Github").status_code == 400
    assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]
    response = post(client, body, gitlab_key, "gl1", GITLAB, "Gitlab")
    assert response.status_code == 200 and response.get_json()[0]["label"] == "true_positive"
    record = tokens.get_token(live.token.id)
    assert record is not None and record.leak_provider == "gitlab" and record.leak_url is None
    assert [(kw["provider"], kw["url"]) for _, kw in signals] == [("gitlab", None)]


def _bad_requests(
    body: bytes, key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey
) -> dict[str, dict[str, Any]]:
    """Reports that must revoke nothing, as ``post`` arguments."""
    reserialized = json.dumps(json.loads(body), indent=1).encode()  # same value, other bytes
    tampered = body.replace(b"bbat_access_token", b"bbat_access_tokex")
    return {
        "unsigned": {"body": body, "key": None},
        "tampered": {"body": tampered, "key": key, "signature": sign(key, body)},
        "re-serialized": {"body": reserialized, "key": key, "signature": sign(key, body)},
        "other key": {"body": body, "key": other},
        "unknown key id": {"body": body, "key": key, "key_id": "nosuchkey"},
        "garbage signature": {"body": body, "key": key, "signature": "bm90IGEgc2lnbmF0dXJl"},
        "not base64": {"body": body, "key": key, "signature": "!!!"},
        "not an array": {"body": b'{"token": "x"}', "key": key},
        "not JSON": {"body": b"[{", "key": key},
        "entry without type": {"body": b'[{"token": "x"}]', "key": key},
    }


@pytest.mark.parametrize(
    "case",
    [
        "unsigned",
        "tampered",
        "re-serialized",
        "other key",
        "unknown key id",
        "garbage signature",
        "not base64",
        "not an array",
        "not JSON",
        "entry without type",
    ],
)
def test_anything_but_a_genuine_report_revokes_nothing(
    client: Any,
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
    gitlab_key: ec.EllipticCurvePrivateKey,
    signals: list[tuple[str, dict[str, Any]]],
    case: str,
) -> None:
    live = new(tokens)
    kwargs = _bad_requests(report((live.secret, URL)), github_key, gitlab_key)[case]
    response = post(client, **kwargs)
    assert response.status_code == 400, response.text
    assert "error" in response.get_json()
    assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]
    assert signals == []


def test_bounds_and_unknown_providers(
    client: Any, tokens: AccessTokens, github_key: ec.EllipticCurvePrivateKey
) -> None:
    live = new(tokens)
    body = report((live.secret, URL))
    unknown = post(client, body, github_key, route="/api/access-tokens/secret-scanning/bitbucket")
    assert unknown.status_code == 404
    huge = b"[" + b" " * MAX_REPORT_BYTES + b"]"
    assert post(client, huge, github_key).status_code == 413
    too_many = report(*[(live.secret, None)] * 1001)
    assert len(too_many) <= MAX_REPORT_BYTES
    assert post(client, too_many, github_key).status_code == 400
    assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]


def test_oversized_body_is_not_read_past_the_bound(
    client: Any, tokens: AccessTokens, github_key: ec.EllipticCurvePrivateKey
) -> None:
    """Without a Content-Length, reading stops one byte past the bound."""
    served: list[int] = []

    class Counting:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            self.left -= n
            served.append(n)
            return b" " * n

    environ = EnvironBuilder(
        path=GITHUB, method="POST", headers={"Content-Type": "application/json"}
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = Counting(4 * MAX_REPORT_BYTES)
    environ["wsgi.input_terminated"] = True
    app_iter, status, _ = run_wsgi_app(client.application, environ, buffered=True)
    assert status.startswith("413")
    assert b"at most" in b"".join(app_iter)
    assert sum(served) <= MAX_REPORT_BYTES + 1


def test_tokens_in_the_request_are_not_refused(
    client: Any, tokens: AccessTokens, github_key: ec.EllipticCurvePrivateKey
) -> None:
    """Scanners need no user, and a token in the headers is not a manager."""
    live = new(tokens)
    body = report((live.secret, URL))
    response = post(client, body, github_key, Authorization=f"Bearer {live.secret}")
    assert response.status_code == 200


def test_garbage_costs_no_lookup(
    client: Any,
    parts: tuple[Flask, SQLAlchemy, Any],
    tokens: AccessTokens,
    github_key: ec.EllipticCurvePrivateKey,
) -> None:
    """Malformed entries are refused by their checksum; each well-formed one
    costs exactly one lookup."""
    db = parts[1]
    lookups: list[str] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "accesstokens_secret" in sql and sql.lstrip().upper().startswith("SELECT"):
            lookups.append(sql)

    live = new(tokens)
    typo = live.secret[:-1] + ("A" if live.secret[-1] != "A" else "B")
    garbage = [(typo, None), ("bbat_short", None), ("x" * 60, None)] * 100
    sa.event.listen(db.engine, "before_cursor_execute", statement)
    try:
        response = post(client, report(*garbage), github_key)
        assert response.status_code == 200
        assert {e["label"] for e in response.get_json()} == {"false_positive"}
        assert lookups == []
        well_formed = [(tokenformat.generate("bbat"), None) for _ in range(5)]
        post(client, report(*well_formed, (live.secret, None)), github_key)
        assert len(lookups) == 6
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", statement)
