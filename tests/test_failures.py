"""When things go wrong: an unreachable database answers 503 and never grants
access, and no header, however hostile, gets a 500."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from flask_accesstokens import AccessTokens

REPO = "/repositories/acme/api"


def close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()


def b64(raw: str | bytes) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


# -- the database -----------------------------------------------------------------


def assert_503(response: Any) -> None:
    assert response.status_code == 503
    body = response.get_json()
    assert body["type"] == "error" and body["error"]["message"]


def test_unreachable_database_is_503_never_access(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    app, db, tokens = make_app(f"sqlite:///{folder / 'tokens.sqlite'}")
    with app.app_context():
        secret = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        ).secret
    close(app, db)
    shutil.rmtree(folder)  # SQLite cannot even create the file now
    try:
        client = app.test_client()
        for _ in range(2):
            assert_503(client.get(REPO, headers=bearer(secret)))
            assert_503(client.get("/optional/acme/api", headers=bearer(secret)))
        # What needs no database is still answered, and a refusal that cannot
        # be written to the audit log is still a refusal.
        assert client.get(REPO).status_code == 401
        assert client.get(REPO, headers=bearer("garbage")).status_code == 401
        # The checksum rejects a typo before any query.
        typo = secret[:-1] + ("0" if secret[-1] != "0" else "1")
        assert client.get(REPO, headers=bearer(typo)).status_code == 401
        assert client.get("/optional/acme/api").get_json() == {"token": None}
    finally:
        close(app, db)


def test_dropped_tables_are_503(app: Flask, db: SQLAlchemy, tokens: AccessTokens) -> None:
    secret = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret
    client = app.test_client()
    assert client.get(REPO, headers=bearer(secret)).status_code == 200
    db.session.remove()
    db.drop_all()
    assert_503(client.get(REPO, headers=bearer(secret)))
    assert_503(client.get(REPO, headers=bearer(secret)))
    db.create_all()  # and it recovers, without a restart, once the database is back
    assert client.get(REPO, headers=bearer(secret)).status_code == 401


def test_a_failing_project_loader_is_503(app: Flask, tokens: AccessTokens) -> None:
    @tokens.project_loader
    def broken(workspace: str, repository: str) -> str | None:
        raise OperationalError("SELECT project", {}, Exception("connection reset"))

    secret = tokens.create_token(
        name="P", workspace="acme", project="API", scopes=["project"]
    ).secret
    assert_503(app.test_client().get(REPO, headers=bearer(secret)))


# -- hostile headers ------------------------------------------------------------------


def hostile(secret: str) -> list[Any]:
    huge = "a" * 100_000
    return [
        "",
        " ",
        "Bearer",
        "Bearer ",
        "bearer  ",
        "Basic",
        "Basic ",
        f"Bearer {huge}",
        f"Basic {b64('x-token-auth:' + huge)}",
        huge,
        f"Bearer {secret}{huge}",
        "Bearer tökén",
        "Bearer ☃☃☃",
        f"Bearer {secret[:20]}é{secret[21:]}",
        f"Basic {b64('x-token-auth:tökén')}",
        f"Basic {b64('tökén:' + secret)}",
        f"Bearer {secret} {secret}",
        f"Bearer {secret}, Bearer {secret}",
        f"Bearer {secret},{secret}",
        f"Bearer {secret}, Basic {b64('x-token-auth:' + secret)}",
        [("Authorization", f"Bearer {secret}"), ("Authorization", f"Bearer {secret}")],
        [("Authorization", f"Bearer {secret}"), ("Authorization", "Bearer garbage")],
        "Basic !!!!",
        "Basic abc",
        "Basic ====",
        f"Basic {b64(b'x-token-auth:' + bytes([0xFF, 0xFE]))}",
        f"Basic {b64('x-token-auth:' + secret)[:-2]}",
        f"Basic {b64('alice:' + secret)}",
        f"Basic {b64(secret)}",
        f"Bearer\t{secret}",
        f"Bearer {secret}\t",
        f"\tBearer {secret}",
        f"Bearer \t{secret}",
        f"Bearer {secret}\x00",
        "Bearer \x7f",
        f'Bearer realm="api", token="{secret}"',
        f"Bearer {secret[::-1]}",
        "Bearer " + "bbat_" + "0" * 49,
    ]


def _send(client: Any, url: str, header: Any) -> Any:
    headers = header if isinstance(header, list) else {"Authorization": header}
    return client.get(url, headers=headers)


def test_hostile_headers_get_400_or_401_never_500(app: Flask, tokens: AccessTokens) -> None:
    secret = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret
    client = app.test_client()
    for header in hostile(secret):
        response = _send(client, REPO, header)
        assert response.status_code in (400, 401), repr(header)[:80]
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
        body = response.get_json()
        assert body["type"] == "error"
        assert secret not in response.get_data(as_text=True)
        optional = _send(client, "/optional/acme/api", header)
        assert optional.status_code in (200, 400, 401), repr(header)[:80]
        if optional.status_code == 200:
            assert optional.get_json() == {"token": None}, repr(header)[:80]


def test_a_400_names_the_problem_without_the_credentials(client: Any) -> None:
    response = client.get(REPO, headers={"Authorization": "Bearer a b"})
    assert response.status_code == 400
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'
    assert "a b" not in response.get_data(as_text=True)


HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=200,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "BASIC", "Token", ""]),
    value=HEADER_TEXT,
    encode=st.booleans(),
)
def test_fuzzed_headers_never_500(client: Any, scheme: str, value: str, encode: bool) -> None:
    if encode:
        value = b64("x-token-auth:" + value)
    response = client.get(REPO, headers={"Authorization": f"{scheme} {value}"})
    assert response.status_code in (400, 401)
