"""``POST {prefix}/access-tokens/revoke``: anyone holding a leaked token can
kill it; the answer never says which tokens existed; throttled per client
whatever ``ACCESSTOKENS_RATELIMIT`` says; canaries stay armed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import canary_tripped
from flask_accesstokens import token_leaked
from flask_accesstokens import tokenformat

REVOKE = "/api/access-tokens/revoke"


@pytest.fixture
def signals(app: Flask) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def leaked(sender: Any, **kwargs: Any) -> None:
        seen.append(("leaked", kwargs))

    def tripped(sender: Any, **kwargs: Any) -> None:
        seen.append(("tripped", kwargs))

    with token_leaked.connected_to(leaked, app), canary_tripped.connected_to(tripped, app):
        yield seen


def new(tokens: AccessTokens, name: str = "CI") -> Any:
    return tokens.create_token(name=name, workspace="acme", repository="api", scopes=["repository"])


def revoke(client: Any, *secrets: str, addr: str = "192.0.2.1", **kwargs: Any) -> Any:
    return client.post(
        REVOKE,
        json={"access_tokens": list(secrets)},
        environ_base={"REMOTE_ADDR": addr},
        buffered=True,
        **kwargs,
    )


def answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.items()), response.data


def test_revokes_live_tokens_at_once(
    app: Flask,
    client: Any,
    tokens: AccessTokens,
    signals: list[tuple[str, dict[str, Any]]],
) -> None:
    live, bystander = new(tokens), new(tokens, "bystander")
    response = revoke(client, live.secret)
    assert response.status_code == 202 and response.get_json() == {}
    record = tokens.get_token(live.token.id)
    assert record is not None and record.state == "revoked"
    assert (record.revoked_by, record.leak_provider, record.leak_url) == (
        "public revocation",
        "public",
        None,
    )
    assert client.get("/repositories/acme/api", headers=bearer(live.secret)).status_code == 401
    assert tokens.get_token(bystander.token.id).revoked_at is None  # type: ignore[union-attr]
    assert [(k, kw["token"].id, kw["provider"], kw["url"]) for k, kw in signals] == [
        ("leaked", live.token.id, "public", None)
    ]
    # Sending it again changes nothing and sends nothing.
    signals.clear()
    assert revoke(client, live.secret).status_code == 202 and signals == []


def test_answer_never_says_which_tokens_existed(
    app: Flask, client: Any, tokens: AccessTokens
) -> None:
    live = new(tokens)
    revoked = new(tokens, "revoked")
    tokens.revoke_token(revoked.token.id)
    canary = tokens.create_canary(name="canary", workspace="acme")
    attempts = [
        [live.secret],
        [tokenformat.generate("bbat")],
        [revoked.secret],
        [canary.secret],
        ["not a token at all"],
        [tokenformat.generate("bbat"), live.secret],
    ]
    answers = [answer(revoke(client, *secrets)) for secrets in attempts]
    assert all(a == answers[0] for a in answers), answers
    status, _, body = answers[0]
    assert status == 202 and json.loads(body) == {}


def test_every_token_costs_its_lookup(
    app: Flask, db: SQLAlchemy, client: Any, tokens: AccessTokens
) -> None:
    """Existing or not, a well-formed token costs one lookup: the work does
    not depend on which tokens existed beyond revoking those that did."""
    lookups: list[str] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "accesstokens_secret" in sql and sql.lstrip().upper().startswith("SELECT"):
            lookups.append(sql)

    live = new(tokens)
    sa.event.listen(db.engine, "before_cursor_execute", statement)
    try:
        revoke(client, tokenformat.generate("bbat"), tokenformat.generate("bbat"))
        unknown = len(lookups)
        lookups.clear()
        revoke(client, tokenformat.generate("bbat"), live.secret)
        assert unknown == len(lookups) == 2
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", statement)


def test_signals_are_sent_after_the_answer(
    app: Flask, client: Any, tokens: AccessTokens, signals: list[tuple[str, dict[str, Any]]]
) -> None:
    live = new(tokens)
    response = client.post(REVOKE, json={"access_tokens": [live.secret]})
    assert response.status_code == 202
    assert signals == []
    assert tokens.get_token(live.token.id).revoked_at is not None  # type: ignore[union-attr]
    response.close()
    assert [kind for kind, _ in signals] == ["leaked"]


def test_canary_stays_armed_and_raises_the_alarm(
    app: Flask, client: Any, tokens: AccessTokens, signals: list[tuple[str, dict[str, Any]]]
) -> None:
    canary = tokens.create_canary(name="canary", workspace="acme", repository="api")
    assert revoke(client, canary.secret, addr="203.0.113.5").status_code == 202
    record = tokens.get_token(canary.token.id)
    assert record is not None and record.revoked_at is None
    assert [(k, kw["token"].id, kw["client"]) for k, kw in signals] == [
        ("tripped", canary.token.id, "203.0.113.5")
    ]
    events = [e for e in tokens.audit_events(canary.token.id) if e.action == "canary_tripped"]
    assert [e.client for e in events] == ["203.0.113.5"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"access_tokens": []}, 400),
        ({"access_tokens": "bbat_x"}, 400),
        ({"access_tokens": [5]}, 400),
        ({"access_tokens": [None]}, 400),
        ({"tokens": ["x"]}, 400),
        ({"access_tokens": ["x"], "extra": 1}, 400),
        (["x"], 400),
        ({"access_tokens": ["x"] * 1001}, 400),
    ],
)
def test_bad_shapes(app: Flask, client: Any, tokens: AccessTokens, body: Any, status: int) -> None:
    live = new(tokens)
    if isinstance(body, dict) and body.get("access_tokens") == ["x"] * 1001:
        body = {"access_tokens": [live.secret] * 1001}
    response = client.post(REVOKE, json=body)
    assert response.status_code == status
    assert "error" in response.get_json()
    assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]


def test_media_type_and_size(app: Flask, client: Any, tokens: AccessTokens) -> None:
    live = new(tokens)
    form = client.post(REVOKE, data={"access_tokens": live.secret})
    assert form.status_code == 415
    text = client.post(
        REVOKE, data=json.dumps({"access_tokens": [live.secret]}), content_type="text/plain"
    )
    assert text.status_code == 415
    broken = client.post(REVOKE, data="{", content_type="application/json")
    assert broken.status_code == 400
    huge = json.dumps({"access_tokens": [live.secret] * 1000 + ["x" * 70_000]})
    assert client.post(REVOKE, data=huge, content_type="application/json").status_code == 413
    assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]
    # 1000 tokens fit in the bound.
    assert revoke(client, *[live.secret] * 1000).status_code == 202
    assert tokens.get_token(live.token.id).revoked_at is not None  # type: ignore[union-attr]


def test_tokens_in_the_request_are_not_refused(
    app: Flask, client: Any, tokens: AccessTokens
) -> None:
    live = new(tokens)
    response = revoke(client, live.secret, headers=bearer(live.secret))
    assert response.status_code == 202
    assert tokens.get_token(live.token.id).revoked_at is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("ratelimit", [None, "1000/minute"])
def test_throttled_per_client_whatever_ratelimit_says(
    database_uri: str, ratelimit: str | None
) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_RATELIMIT=ratelimit)
    try:
        client = app.test_client()
        with app.app_context():
            live = new(tokens)
        for _ in range(10):
            assert revoke(client, tokenformat.generate("bbat")).status_code == 202
        refused = revoke(client, live.secret)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.get_json()["error"]["message"]
        with app.app_context():
            assert tokens.get_token(live.token.id).revoked_at is None  # type: ignore[union-attr]
        # Another client is not held back by this one.
        assert revoke(client, live.secret, addr="192.0.2.99").status_code == 202
        # Nor are the app's protected routes.
        assert client.get("/repositories/acme/api", headers=bearer("x")).status_code == 401
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_limit_is_configurable(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_PUBLIC_REVOCATION_LIMIT="2/minute")
    try:
        client = app.test_client()
        statuses = [revoke(client, tokenformat.generate("bbat")).status_code for _ in range(3)]
        assert statuses == [202, 202, 429]
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_off_with_the_api(database_uri: str) -> None:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_API_URL_PREFIX=None)
    try:
        client = app.test_client()
        assert revoke(client, tokenformat.generate("bbat")).status_code == 404
        scanning = client.post("/api/access-tokens/secret-scanning/github", data=b"[]")
        assert scanning.status_code == 404
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()
