"""Protected views whatever the method (class 9), framing of the admin pages
(class 10), and throttling probes not covered in test_ratelimit.py (class 8).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask import request
from flask.views import MethodView
from helpers import bearer
from helpers import make_app
from test_admin import make_admin_app
from test_admin import running
from test_ratelimit import storages
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import require_scope
from flask_accesstokens.pipeline import Pipeline

GARBAGE = bearer("bbat_" + "x" * 49)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE"]


@pytest.fixture
def secret(tokens: AccessTokens) -> str:
    new = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository:write"]
    )
    return new.secret


# -- class 9: every method ----------------------------------------------------------


def test_a_view_never_runs_without_a_token_whatever_the_method(app: Flask, secret: str) -> None:
    ran: list[str] = []

    @app.route("/all/<workspace>/<repo_slug>", methods=METHODS)
    @require_scope("repository:write")
    def everything(workspace: str, repo_slug: str) -> Any:
        ran.append(request.method)
        return jsonify(token=current_token.id)

    client = app.test_client()
    for method in METHODS:
        for headers in ({}, GARBAGE, {"Authorization": "Basic Zm9vOmJhcg=="}):
            response = client.open("/all/acme/api", method=method, headers=headers)
            assert response.status_code == 401, (method, headers)
            assert "WWW-Authenticate" in response.headers
        wrong_place = client.open("/all/acme/web", method=method, headers=bearer(secret))
        assert wrong_place.status_code == 403, method
    assert ran == []
    for method in METHODS:
        assert (
            client.open("/all/acme/api", method=method, headers=bearer(secret)).status_code == 200
        )
    assert ran == METHODS


def test_automatic_head_of_a_get_view_needs_a_token(app: Flask, secret: str) -> None:
    # Flask answers HEAD by running the GET view: it must be protected too.
    client = app.test_client()
    assert client.head("/repositories/acme/api").status_code == 401
    assert client.head("/repositories/acme/api", headers=GARBAGE).status_code == 401
    assert client.head("/repositories/acme/api", headers=bearer(secret)).status_code == 200


def test_method_views_are_protected_for_each_method(app: Flask, secret: str) -> None:
    ran: list[str] = []

    class Thing(MethodView):
        decorators = [require_scope("repository:write")]

        def get(self, workspace: str, repo_slug: str) -> Any:
            ran.append("GET")
            return jsonify(ok=True)

        def patch(self, workspace: str, repo_slug: str) -> Any:
            ran.append("PATCH")
            return jsonify(ok=True)

        def options(self, workspace: str, repo_slug: str) -> Any:
            ran.append("OPTIONS")
            return jsonify(ok=True)

    app.add_url_rule("/thing/<workspace>/<repo_slug>", view_func=Thing.as_view("thing"))
    client = app.test_client()
    for method in ("GET", "HEAD", "PATCH", "OPTIONS"):
        assert client.open("/thing/acme/api", method=method).status_code == 401, method
    assert ran == []
    assert client.open("/thing/acme/api", method="PATCH", headers=bearer(secret)).status_code == 200
    assert ran == ["PATCH"]


def test_async_views_are_protected_for_options(app: Flask, secret: str) -> None:
    pytest.importorskip("asgiref", reason="async views need Flask's async extra")
    ran: list[str] = []

    @app.route("/async/<workspace>/<repo_slug>", methods=["GET", "OPTIONS"])
    @require_scope("repository")
    async def view(workspace: str, repo_slug: str) -> Any:
        ran.append(request.method)
        return jsonify(ok=True)

    client = app.test_client()
    assert client.options("/async/acme/api").status_code == 401
    assert client.options("/async/acme/api", headers=GARBAGE).status_code == 401
    assert ran == []
    assert client.options("/async/acme/api", headers=bearer(secret)).status_code == 200
    assert ran == ["OPTIONS"]


def test_automatic_options_of_a_protected_view_never_runs_it(app: Flask) -> None:
    ran: list[str] = []

    @app.route("/auto/<workspace>/<repo_slug>", methods=["PUT", "PATCH"])
    @require_scope("repository:write")
    def view(workspace: str, repo_slug: str) -> Any:
        ran.append(request.method)
        return jsonify(ok=True)

    response = app.test_client().options("/auto/acme/api", headers=GARBAGE)
    assert response.status_code == 200
    assert {"PUT", "PATCH", "OPTIONS"} <= set(response.headers["Allow"].split(", "))
    assert ran == []


# -- class 10: framing of the admin pages ------------------------------------------------


@pytest.fixture
def admin(database_uri: str) -> Iterator[tuple[Flask, Any, AccessTokens]]:
    app, db, tokens = make_admin_app(database_uri)
    with running(app, db):
        client = app.test_client()
        assert client.get("/test-login?user=alice").status_code == 200
        yield app, client, tokens


REPO_PAGES = "/settings/repositories/acme/api/access-tokens"


def assert_not_frameable(response: Any) -> None:
    assert response.headers.get("X-Frame-Options") == "SAMEORIGIN", response.status_code
    policies = response.headers.getlist("Content-Security-Policy")
    assert any("frame-ancestors 'self'" in p for p in policies), response.status_code


def test_every_admin_answer_forbids_foreign_frames(admin: tuple[Flask, Any, AccessTokens]) -> None:
    app, alice, tokens = admin
    token_id = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).token.id
    stranger = app.test_client()
    answers = [
        alice.get(REPO_PAGES),  # 200
        alice.get(f"{REPO_PAGES}/new"),
        alice.get(f"{REPO_PAGES}/{token_id}/revoke"),  # the one-click confirm form
        alice.get(f"{REPO_PAGES}/{token_id}/rotate"),
        alice.get("/settings/workspaces/acme/access-tokens/all"),
        alice.get("/settings/workspaces/acme/access-tokens/all?unused_days=x"),  # 400
        alice.post(f"{REPO_PAGES}/new", data={}),  # 400: no CSRF token
        alice.get(f"{REPO_PAGES}/{'0' * 32}/revoke"),  # 404
        alice.get("/settings/repositories/acme/zz%0A/access-tokens"),  # 404
        alice.put(REPO_PAGES),  # 405, answered before any view
        alice.delete(f"{REPO_PAGES}/{token_id}/revoke"),  # 405
        stranger.get(REPO_PAGES),  # 403
        stranger.get(REPO_PAGES, headers=GARBAGE),  # 403: a token never manages
    ]
    assert {r.status_code for r in answers} >= {200, 400, 403, 404, 405}
    for response in answers:
        assert_not_frameable(response)


def test_an_apps_own_policy_is_kept_and_framing_added(database_uri: str) -> None:
    app, db, tokens = make_admin_app(database_uri)

    @app.after_request
    def policy(response: Any) -> Any:
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        return response

    with running(app, db):
        client = app.test_client()
        client.get("/test-login?user=alice")
        response = client.get(REPO_PAGES)
        policies = response.headers.getlist("Content-Security-Policy")
        assert "default-src 'self'" in policies
        assert_not_frameable(response)
        # The app's other pages are the app's business.
        assert "X-Frame-Options" not in client.get("/test-login?user=alice").headers


# -- class 8: throttling probes beyond test_ratelimit.py ----------------------------------------


@pytest.fixture(params=storages())
def limited(request: Any, database_uri: str) -> Iterator[tuple[Flask, str]]:
    app, db, tokens = make_app(
        database_uri,
        ACCESSTOKENS_RATELIMIT="3/minute",
        ACCESSTOKENS_RATELIMIT_STORAGE_URI=request.param,
        ACCESSTOKENS_FAILURE_AUDIT_INTERVAL=timedelta(microseconds=1),
    )
    throttle = Pipeline.of(app).throttle
    assert throttle is not None
    throttle.namespace = f"accesstokens-{uuid.uuid4().hex}"
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        yield app, new.secret
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


def get(app: Flask, headers: dict[str, str], **environ: str) -> Any:
    return app.test_client().get("/repositories/acme/api", headers=headers, environ_base=environ)


def test_ipv6_clients_are_throttled_and_valid_tokens_pass(limited: tuple[Flask, str]) -> None:
    app, secret = limited
    for _ in range(3):
        assert get(app, GARBAGE, REMOTE_ADDR="2001:db8::1").status_code == 401
    assert get(app, GARBAGE, REMOTE_ADDR="2001:db8::1").status_code == 429
    assert get(app, bearer(secret), REMOTE_ADDR="2001:db8::1").status_code == 200
    # Another address of the same /64 is the same client (third round);
    # another /64, or an IPv4 client in mapped form, is counted on its own.
    assert get(app, GARBAGE, REMOTE_ADDR="2001:db8::2").status_code == 429
    assert get(app, GARBAGE, REMOTE_ADDR="2001:db8:0:1::1").status_code == 401
    assert get(app, GARBAGE, REMOTE_ADDR="::ffff:10.0.0.1").status_code == 401


def test_addresses_with_odd_characters_are_keys_not_syntax(limited: tuple[Flask, str]) -> None:
    # Storage keys are built from the address: separators must not merge clients.
    app, secret = limited
    for _ in range(3):
        get(app, GARBAGE, REMOTE_ADDR="10.0.0.1/accesstokens")
    assert get(app, GARBAGE, REMOTE_ADDR="10.0.0.1/accesstokens").status_code == 429
    assert get(app, GARBAGE, REMOTE_ADDR="10.0.0.1").status_code == 401
    assert get(app, bearer(secret), REMOTE_ADDR="10.0.0.1/accesstokens").status_code == 200


def test_proxyfix_addresses_are_the_clients(limited: tuple[Flask, str]) -> None:
    app, secret = limited
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    proxy = "10.9.9.9"
    for _ in range(3):
        response = get(app, GARBAGE, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
        assert response.status_code == 401
    over = get(app, GARBAGE, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert over.status_code == 429
    # Another client behind the same proxy is not throttled for it, and a
    # valid token from the throttled client still passes.
    other = get(app, GARBAGE, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert other.status_code == 401
    valid = get(app, bearer(secret), REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert valid.status_code == 200


def test_no_remote_address_never_breaks_requests(limited: tuple[Flask, str]) -> None:
    app, secret = limited
    client = app.test_client()
    environ = {"REMOTE_ADDR": ""}
    for _ in range(5):
        response = client.get("/repositories/acme/api", headers=GARBAGE, environ_base=environ)
        assert response.status_code in (401, 429)
    valid = client.get("/repositories/acme/api", headers=bearer(secret), environ_base=environ)
    assert valid.status_code == 200
