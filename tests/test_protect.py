"""Every row of the contract's HTTP table for a protected route, with the
exact ``WWW-Authenticate`` challenges and Bitbucket-shaped JSON bodies."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import jsonify
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import InvalidToken
from flask_accesstokens import require_scope
from flask_accesstokens import tokenformat
from flask_accesstokens import verify_token_in_request
from flask_accesstokens.models import utcnow
from flask_accesstokens.state import app_state

REPO = "/repositories/acme/api"
BARE = 'Bearer realm="api"'
INVALID = 'Bearer realm="api", error="invalid_token"'


def insufficient(scope: str) -> str:
    return f'Bearer realm="api", error="insufficient_scope", scope="{scope}"'


def assert_401_body(response: Any) -> None:
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"message"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_403(response: Any, scope: str, required: list[str], granted: list[str]) -> None:
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == insufficient(scope)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"message", "detail"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["detail"] == {
        "reason": "insufficient_scope",
        "required": required,
        "granted": granted,
    }


@pytest.fixture
def secret(app: Flask, tokens: AccessTokens) -> str:
    """A repository token on acme/api that can read and write."""
    return tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository:write"]
    ).secret


# -- no token ------------------------------------------------------------------


def test_no_authorization_header(client: Any) -> None:
    response = client.get(REPO)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE
    assert_401_body(response)


@pytest.mark.parametrize(
    "header",
    [
        "Token {secret}",
        "Digest username=x-token-auth",
        "Negotiate {secret}",
        "OAuth {secret}",
        "{secret}",
        "Bearer\t{secret}",
    ],
)
def test_another_scheme_counts_as_no_token(client: Any, secret: str, header: str) -> None:
    response = client.get(REPO, headers={"Authorization": header.format(secret=secret)})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE
    assert_401_body(response)


@pytest.mark.parametrize("username", ["alice", "X-Token-Auth", "x-token-auth ", ""])
def test_basic_with_another_username_counts_as_no_token(
    client: Any, secret: str, username: str
) -> None:
    response = client.get(REPO, headers=basic(secret, username=username))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE


def test_token_in_query_string_is_not_accepted(client: Any, secret: str) -> None:
    for name in ("access_token", "token", "auth", "bearer"):
        response = client.get(f"{REPO}?{name}={secret}")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == BARE


def test_token_in_form_body_is_not_accepted(client: Any, secret: str) -> None:
    response = client.post(f"{REPO}/push", data={"access_token": secret})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BARE


# -- invalid tokens ------------------------------------------------------------


def _invalid_secrets(app: Flask, tokens: AccessTokens, secret: str) -> dict[str, str]:
    revoked = tokens.create_token(
        name="r", workspace="acme", repository="api", scopes=["repository"]
    )
    tokens.revoke_token(revoked.token.id)
    expired = tokens.create_token(
        name="e",
        workspace="acme",
        repository="api",
        scopes=["repository"],
        expires_at=utcnow() + timedelta(hours=1),
    )
    db = app_state().db
    db.session.execute(
        sa.update(AccessToken)
        .where(AccessToken.id == expired.token.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    typo = secret[:10] + ("A" if secret[10] != "A" else "B") + secret[11:]
    return {
        "unknown": tokenformat.generate("bbat"),
        "malformed": "garbage",
        "typo": typo,
        "truncated": secret[:-1],
        "other prefix": tokenformat.generate("ghp"),
        "revoked": revoked.secret,
        "expired": expired.secret,
        "too long": secret + "x",
    }


@pytest.mark.parametrize("auth", [bearer, basic], ids=["bearer", "basic"])
def test_invalid_tokens_get_one_answer(
    app: Flask, tokens: AccessTokens, client: Any, secret: str, auth: Any
) -> None:
    for why, bad in _invalid_secrets(app, tokens, secret).items():
        response = client.get(REPO, headers=auth(bad))
        assert response.status_code == 401, why
        assert response.headers["WWW-Authenticate"] == INVALID, why
        assert_401_body(response)
        assert response.get_json() == client.get(REPO, headers=auth("garbage")).get_json()
        assert bad not in response.get_data(as_text=True)


def test_basic_token_is_taken_as_sent_without_trimming(client: Any, secret: str) -> None:
    for sent in (f" {secret}", f"{secret} ", f"{secret}\n"):
        raw = base64.b64encode(f"x-token-auth:{sent}".encode()).decode()
        response = client.get(REPO, headers={"Authorization": f"Basic {raw}"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == INVALID


def test_revocation_takes_effect_on_the_next_request(tokens: AccessTokens, client: Any) -> None:
    new = tokens.create_token(name="t", workspace="acme", repository="api", scopes=["repository"])
    assert client.get(REPO, headers=bearer(new.secret)).status_code == 200
    tokens.revoke_token(new.token.id)
    response = client.get(REPO, headers=bearer(new.secret))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == INVALID


# -- valid tokens --------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        lambda s: {"Authorization": f"Bearer {s}"},
        lambda s: {"Authorization": f"bearer {s}"},
        lambda s: {"Authorization": f"BEARER {s}"},
        lambda s: {"Authorization": f"bEaReR {s}"},
        basic,
        lambda s: {"Authorization": "basic " + basic(s)["Authorization"][6:]},
        lambda s: {"Authorization": "BASIC " + basic(s)["Authorization"][6:]},
    ],
    ids=["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "basic", "BASIC"],
)
def test_valid_token_runs_the_view(
    tokens: AccessTokens, client: Any, secret: str, header: Any
) -> None:
    response = client.get(REPO, headers=header(secret))
    assert response.status_code == 200
    token_id = tokens.list_tokens("acme", repository="api")[0].id
    assert response.get_json() == {"token": token_id, "name": "CI"}


def test_implied_scope_is_enough(client: Any, secret: str) -> None:
    # The route wants "repository"; the token holds "repository:write".
    assert client.get(REPO, headers=bearer(secret)).status_code == 200
    assert client.post(f"{REPO}/push", headers=bearer(secret)).status_code == 200


def test_missing_scope_is_403_with_the_required_scope(tokens: AccessTokens, client: Any) -> None:
    reader = tokens.create_token(
        name="r", workspace="acme", repository="api", scopes=["repository", "webhook"]
    ).secret
    for auth in (bearer, basic):
        response = client.post(f"{REPO}/push", headers=auth(reader))
        assert_403(response, "repository:write", ["repository:write"], ["repository", "webhook"])


def test_several_required_scopes_are_all_needed(tokens: AccessTokens, client: Any) -> None:
    url = f"{REPO}/pullrequests"
    both = tokens.create_token(
        name="b", workspace="acme", repository="api", scopes=["pullrequest:write", "pipeline:write"]
    ).secret
    one = tokens.create_token(
        name="o", workspace="acme", repository="api", scopes=["pullrequest:write"]
    ).secret
    assert client.post(url, headers=bearer(both)).status_code == 200
    assert_403(
        client.post(url, headers=bearer(one)),
        "pullrequest:write pipeline",
        ["pullrequest:write", "pipeline"],
        ["pullrequest:write"],
    )


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        (["webhook"], 200),
        (["runner"], 200),
        (["runner:write"], 200),
        (["webhook", "runner"], 200),
        (["repository:write", "pipeline"], 403),
    ],
)
def test_require_any_scope(
    tokens: AccessTokens, client: Any, scopes: list[str], status: int
) -> None:
    secret = tokens.create_token(name="t", workspace="acme", repository="api", scopes=scopes)
    response = client.get(f"{REPO}/either", headers=bearer(secret.secret))
    assert response.status_code == status
    if status == 403:
        assert_403(response, "webhook runner", ["webhook", "runner"], scopes)


def test_token_bound_to_another_resource_is_403(client: Any, secret: str) -> None:
    """(third round) Said in the model's words, with no scope lists: the
    token holds the scope; it is bound elsewhere. The challenge is unchanged."""
    response = client.get("/repositories/acme/lib", headers=bearer(secret))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == insufficient("repository")
    assert response.get_json() == {
        "type": "error",
        "error": {
            "message": "This access token is not for this repository.",
            "detail": {"reason": "wrong_resource"},
        },
    }


# -- OPTIONS, optional auth, overrides ------------------------------------------


def test_a_view_that_declares_options_never_runs_without_a_token(app: Flask, secret: str) -> None:
    ran: list[str] = []

    @app.route("/cors/<workspace>/<repo_slug>", methods=["GET", "POST", "OPTIONS"])
    @require_scope("repository")
    def cors(workspace: str, repo_slug: str) -> Any:
        ran.append(request.method)  # a side effect the view must not have unauthenticated
        return jsonify(token=current_token.id)

    client = app.test_client()
    for headers in ({}, {"Origin": "https://evil.example"}, bearer("bbat_" + "x" * 49)):
        assert client.options("/cors/acme/api", headers=headers).status_code == 401
    assert client.options("/cors/acme/web", headers=bearer(secret)).status_code == 403
    assert ran == []
    response = client.options("/cors/acme/api", headers=bearer(secret))
    assert response.status_code == 200 and ran == ["OPTIONS"]


def test_cors_preflights_still_work_with_flask_cors(app: Flask, secret: str) -> None:
    flask_cors = pytest.importorskip("flask_cors", reason="pip install -e '.[test]'")

    @app.route("/cors-api/<workspace>/<repo_slug>", methods=["GET", "PUT"])
    @require_scope("repository:write")
    def cors_api(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    flask_cors.CORS(app, resources={r"/cors-api/*": {"origins": "https://ci.example"}})
    client = app.test_client()
    preflight = client.options(
        "/cors-api/acme/api",
        headers={
            "Origin": "https://ci.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ci.example"
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    # The actual request still needs the token.
    put = client.put("/cors-api/acme/api", headers={"Origin": "https://ci.example"})
    assert put.status_code == 401
    assert put.headers["Access-Control-Allow-Origin"] == "https://ci.example"


def test_automatic_options_needs_no_token(client: Any) -> None:
    response = client.options(REPO)
    assert response.status_code == 200
    assert "GET" in response.headers["Allow"]


def test_optional_auth_without_token_is_anonymous(client: Any) -> None:
    response = client.get("/optional/acme/api")
    assert response.status_code == 200
    assert response.get_json() == {"token": None}


def test_optional_auth_with_another_scheme_is_anonymous(client: Any, secret: str) -> None:
    assert client.get("/optional/acme/api", headers=basic(secret, "alice")).get_json() == {
        "token": None
    }


def test_optional_auth_with_a_valid_token(tokens: AccessTokens, client: Any, secret: str) -> None:
    response = client.get("/optional/acme/api", headers=bearer(secret))
    assert response.status_code == 200
    assert response.get_json() == {"token": tokens.list_tokens("acme", repository="api")[0].id}


@pytest.mark.parametrize(
    "headers",
    [bearer(tokenformat.generate("bbat")), bearer("bbat_garbage"), basic("garbage")],
    ids=["unknown", "malformed", "basic"],
)
def test_optional_auth_still_refuses_a_bad_token(
    client: Any, secret: str, headers: dict[str, str]
) -> None:
    response = client.get("/optional/acme/api", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == INVALID
    wrong = client.get("/optional/acme/lib", headers=bearer(secret))
    assert wrong.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),  # a JWT
        bearer("garbage"),
        bearer("a b, c"),  # unreadable, but not in the extension's format
        {"Authorization": "Bearer"},
        basic("hunter2", username="alice"),
        {"Authorization": "Basic !!!not base64"},
        {"Authorization": "Digest username=alice"},
    ],
    ids=["jwt", "other-bearer", "unreadable-bearer", "bare-bearer", "user", "bad-basic", "digest"],
)
def test_optional_auth_leaves_the_apps_own_credentials_alone(
    client: Any, headers: dict[str, str]
) -> None:
    """Other credentials are the app's login to judge: the view runs as
    anonymous, with no challenge and no scope headers."""
    response = client.get("/optional/acme/api", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"token": None}
    assert "WWW-Authenticate" not in response.headers
    assert "X-OAuth-Scopes" not in response.headers


@pytest.mark.parametrize(
    ("headers", "status", "challenge"),
    [
        (bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"), 401, INVALID),
        (bearer("garbage"), 401, INVALID),
        (basic("hunter2", username="alice"), 401, 'Bearer realm="api"'),
    ],
    ids=["jwt", "other-bearer", "user"],
)
def test_required_auth_answers_other_credentials_as_before(
    client: Any, headers: dict[str, str], status: int, challenge: str
) -> None:
    response = client.get("/repositories/acme/api", headers=headers)
    assert response.status_code == status
    assert response.headers["WWW-Authenticate"] == challenge


def test_verify_token_in_request_builds_custom_checks(app: Flask, secret: str) -> None:
    @app.get("/custom/<workspace>/<repo_slug>")
    def custom(workspace: str, repo_slug: str) -> Any:
        token = verify_token_in_request("repository", optional=True)
        return jsonify(name=token.name if token else "anonymous")

    @app.get("/custom-any/<workspace>/<repo_slug>")
    def custom_any(workspace: str, repo_slug: str) -> Any:
        verify_token_in_request("webhook", "repository:write", any_of=True)
        return jsonify(name=current_token.name)

    client = app.test_client()
    assert client.get("/custom/acme/api").get_json() == {"name": "anonymous"}
    assert client.get("/custom/acme/api", headers=bearer(secret)).get_json() == {"name": "CI"}
    assert client.get("/custom/acme/lib", headers=bearer(secret)).status_code == 403
    assert client.get("/custom-any/acme/api", headers=bearer(secret)).get_json() == {"name": "CI"}
    assert client.get("/custom-any/acme/api").status_code == 401


def test_apps_can_override_the_error_responses(app: Flask, secret: str) -> None:
    @app.errorhandler(401)
    def unauthorized(e: Any) -> Any:
        return jsonify(custom=True, invalid=isinstance(e, InvalidToken)), 401

    client = app.test_client()
    assert client.get(REPO).get_json() == {"custom": True, "invalid": False}
    assert client.get(REPO, headers=bearer("garbage")).get_json() == {
        "custom": True,
        "invalid": True,
    }


def test_the_realm_is_configurable(tmp_path: Any) -> None:
    app, db, tokens = make_app(
        f"sqlite:///{tmp_path / 'realm.sqlite'}", ACCESSTOKENS_REALM="bitbucket.example"
    )
    try:
        client = app.test_client()
        assert client.get(REPO).headers["WWW-Authenticate"] == 'Bearer realm="bitbucket.example"'
        assert client.get(REPO, headers=bearer("x")).headers["WWW-Authenticate"] == (
            'Bearer realm="bitbucket.example", error="invalid_token"'
        )
    finally:
        _close(app, db)


def _close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        AccessTokens.dispose_connections()
        db.engine.dispose()
