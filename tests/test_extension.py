"""``extension``: the wiring. One ``AccessTokens`` serving several apps, the
surfaces each app's config asks for, responses to token requests without
cookies, closing connections, and the Python API as the service's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope
from flask_accesstokens.extension import _DropCookies
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.service import TokenService
from flask_accesstokens.state import app_state
from flask_accesstokens.state import ENVIRON_KEY
from flask_accesstokens.state import SERVICE_KEY

REPO = "/repositories/acme/api"


def host(path: Path, **config: Any) -> tuple[Flask, SQLAlchemy]:
    """An app with a protected route, before the extension is added."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="extension test key",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{path}",
        **config,
    )
    db = SQLAlchemy(app)

    @app.get("/repositories/<workspace>/<repo_slug>")
    @require_scope("repository")
    def repository(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    return app, db


def close(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        db.session.remove()
        AccessTokens.dispose_connections()
        db.engine.dispose()


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[AccessTokens, Flask, Flask]]:
    """One extension object, two apps on two databases."""
    tokens = AccessTokens()
    first, first_db = host(tmp_path / "first.sqlite")
    second, second_db = host(tmp_path / "second.sqlite", ACCESSTOKENS_TOKEN_PREFIX="othr")
    tokens.init_app(first, db=first_db)
    tokens.init_app(second, db=second_db)
    for app, db in ((first, first_db), (second, second_db)):
        with app.app_context():
            db.create_all()
    yield tokens, first, second
    close(first, first_db)
    close(second, second_db)


# -- init_app --------------------------------------------------------------------------


def test_init_app_registers_the_extension_under_accesstokens(
    two_apps: tuple[AccessTokens, Flask, Flask],
) -> None:
    tokens, first, second = two_apps
    assert first.extensions["accesstokens"] is tokens
    assert second.extensions["accesstokens"] is tokens
    assert not hasattr(tokens, "app")  # never stored on the extension


def test_init_app_needs_a_db() -> None:
    with pytest.raises(RuntimeError, match="db=db"):
        AccessTokens().init_app(Flask(__name__))


def test_the_db_given_to_the_constructor_is_used_by_init_app(tmp_path: Path) -> None:
    app, db = host(tmp_path / "t.sqlite")
    tokens = AccessTokens(db=db)
    tokens.init_app(app)
    assert app_state(app).db is db
    assert "accesstokens_token" in db.metadata.tables
    close(app, db)


def test_one_extension_serves_two_apps_with_separate_state(
    two_apps: tuple[AccessTokens, Flask, Flask],
) -> None:
    tokens, first, second = two_apps
    assert app_state(first) is not app_state(second)
    assert app_state(first).settings.token_prefix == "bbat"
    assert app_state(second).settings.token_prefix == "othr"
    assert Pipeline.of(first) is not Pipeline.of(second)
    assert tokens.service(first) is not tokens.service(second)

    with first.app_context():
        made_on_first = tokens.create_token(name="a", workspace="acme", repository="api",
                                            scopes=["repository"])  # fmt: skip
        assert made_on_first.secret.startswith("bbat_")
    with second.app_context():
        made_on_second = tokens.create_token(name="b", workspace="acme", repository="api",
                                             scopes=["repository"])  # fmt: skip
        assert made_on_second.secret.startswith("othr_")
        assert [t.name for t in tokens.list_tokens("acme", repository="api")] == ["b"]
        assert tokens.get_token(made_on_first.token.id) is None

    assert first.test_client().get(REPO, headers=bearer(made_on_first.secret)).status_code == 200
    assert second.test_client().get(REPO, headers=bearer(made_on_first.secret)).status_code == 401
    assert second.test_client().get(REPO, headers=bearer(made_on_second.secret)).status_code == 200


# -- surfaces --------------------------------------------------------------------------


def surfaces(app: Flask) -> tuple[set[str], bool]:
    return set(app.blueprints), "access-tokens" in app.cli.commands


@pytest.mark.parametrize(
    ("config", "blueprints", "cli"),
    [
        ({}, {"accesstokens_api"}, True),
        ({"ACCESSTOKENS_ADMIN_URL_PREFIX": "/settings"}, {"accesstokens_api",
                                                          "accesstokens_admin"}, True),
        ({"ACCESSTOKENS_API_URL_PREFIX": None}, set(), True),
        ({"ACCESSTOKENS_API_URL_PREFIX": None, "ACCESSTOKENS_CLI": False}, set(), False),
    ],
)  # fmt: skip
def test_surfaces_are_registered_as_configured(
    tmp_path: Path, config: dict[str, Any], blueprints: set[str], cli: bool
) -> None:
    app, db = host(tmp_path / "t.sqlite", **config)
    AccessTokens(app, db=db)
    assert surfaces(app) == (blueprints, cli)
    rules = {r.rule for r in app.url_map.iter_rules()}
    path = "/api/repositories/<accesstokens_name:workspace>/<accesstokens_name:repository>"
    assert (f"{path}/access-tokens" in rules) == bool("accesstokens_api" in blueprints)
    close(app, db)


def test_each_app_gets_the_surfaces_of_its_own_config(tmp_path: Path) -> None:
    tokens = AccessTokens()
    with_api, db1 = host(tmp_path / "one.sqlite")
    without, db2 = host(tmp_path / "two.sqlite", ACCESSTOKENS_API_URL_PREFIX=None)
    tokens.init_app(with_api, db=db1)
    tokens.init_app(without, db=db2)
    assert "accesstokens_api" in with_api.blueprints
    assert "accesstokens_api" not in without.blueprints
    close(with_api, db1)
    close(without, db2)


# -- cookies ---------------------------------------------------------------------------


def cookie_app(environ_flag: bool) -> tuple[Any, dict[str, Any]]:
    """A bare WSGI app that sets cookies and, if asked, marks the request as
    token-authenticated as the pipeline does."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ_flag:
            environ[ENVIRON_KEY] = "token id"
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "session=abc"),
                ("set-cookie", "other=1"),
                ("X-Kept", "yes"),
            ],
        )
        return [b"ok"]

    return wsgi, {}


@pytest.mark.parametrize("authenticated", [True, False])
def test_drop_cookies_strips_set_cookie_only_for_token_requests(authenticated: bool) -> None:
    wsgi, environ = cookie_app(authenticated)
    sent: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        sent.append((status, headers))

    body = _DropCookies(wsgi, lambda: None)(environ, start_response)
    assert body == [b"ok"]
    [(status, headers)] = sent
    names = [name for name, _ in headers]
    assert status == "200 OK"
    assert "X-Kept" in names and "Content-Type" in names
    cookies = [name for name in names if name.lower() == "set-cookie"]
    assert cookies == ([] if authenticated else ["Set-Cookie", "set-cookie"])


def test_init_app_wraps_the_wsgi_app(two_apps: tuple[AccessTokens, Flask, Flask]) -> None:
    _, first, _ = two_apps
    assert isinstance(first.wsgi_app, _DropCookies)


# -- connections -----------------------------------------------------------------------


def test_dispose_connections_closes_the_request_paths_idle_connections(
    app: Flask, tokens: AccessTokens
) -> None:
    AccessTokens.dispose_connections()  # nothing opened yet: nothing to do, no error
    secret = tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    ).secret
    assert app.test_client().get(REPO, headers=bearer(secret)).status_code == 200
    store = Pipeline.of(app).store
    pool = store._own_pool()
    assert len(store._idle) == 1 and pool.checkedout() == 1  # kept for the next lookup
    AccessTokens.dispose_connections(app)
    assert store._idle == [] and pool.checkedin() == 0 and pool.checkedout() == 0
    # and the next request opens a new one
    assert app.test_client().get(REPO, headers=bearer(secret)).status_code == 200


# -- the Python API --------------------------------------------------------------------


class Recorder:
    """Stands in for the service: records each call and returns a marker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name in ("search",):
                return type("Page", (), {"items": ["page item"]})()
            if name == "events":
                return ("event",)
            return f"result of {name}"

        return call


WHEN = datetime(2031, 1, 1, tzinfo=timezone.utc)

#: (AccessTokens method, its arguments, the service call it must make)
DELEGATION: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[Any, ...]]] = [
    (
        "create_token",
        (),
        {"name": "CI", "workspace": "acme", "scopes": ["repository"], "repository": "api",
         "created_by": "alice", "expires_at": WHEN, "allowed_ips": ["10.0.0.0/8"]},
        ("create", (), {"name": "CI", "workspace": "acme", "scopes": ["repository"],
                        "resource": None, "project": None, "repository": "api",
                        "created_by": "alice", "expires_at": WHEN,
                        "allowed_ips": ["10.0.0.0/8"]}),
    ),
    (
        "create_canary",
        (),
        {"name": "bait", "workspace": "acme", "repository": "api", "created_by": "alice"},
        ("create_canary", (), {"name": "bait", "resource": None, "workspace": "acme",
                               "project": None,
                               "repository": "api", "created_by": "alice"}),
    ),
    ("notify_expiring", (WHEN,), {}, ("notify_expiring", (WHEN,), {})),
    ("get_token", ("id1",), {}, ("get", ("id1",), {})),
    ("revoke_token", ("id1", "alice"), {}, ("revoke", ("id1", "alice"), {})),
    (
        "revoke_resource_tokens",
        ("acme", "API", None, "alice"),
        {},
        ("revoke_resource", ("result of resolve", "alice"), {}),
    ),
    (
        "rotate_token",
        ("id1", "alice", timedelta(minutes=5)),
        {},
        ("rotate", ("id1", "alice", timedelta(minutes=5)), {"scopes": None}),
    ),
    (
        "rotate_token",
        ("id1",),
        {"scopes": ["repository"]},
        ("rotate", ("id1", None, None), {"scopes": ["repository"]}),
    ),
    ("token_usage", ("id1",), {}, ("usage", ("id1",), {})),
    (
        "notify_overprivileged",
        (timedelta(days=90), WHEN),
        {},
        ("notify_overprivileged", (timedelta(days=90), WHEN), {}),
    ),
    (
        "prune_tokens",
        (timedelta(days=30),),
        {"dry_run": True},
        ("prune", (timedelta(days=30),), {"dry_run": True, "clients_older_than": None}),
    ),
    (
        "search_tokens",
        ("acme",),
        {"state": "active"},
        ("search", ("result of resolve",), {"state": "active"}),
    ),
    (
        "create_trust_policy",
        (),
        {"resource": {"workspace": "acme"}, "issuer": "github", "claims": {"ref": "main"},
         "scopes": ["repository"], "lifetime": timedelta(minutes=5), "created_by": "alice"},
        ("create_trust_policy", (),
         {"resource": {"workspace": "acme"}, "issuer": "github", "claims": {"ref": "main"},
          "scopes": ["repository"], "lifetime": timedelta(minutes=5), "created_by": "alice"}),
    ),
    ("delete_trust_policy", ("p1", "alice"), {}, ("delete_trust_policy", ("p1", "alice"), {})),
    ("list_trust_policies", ({"workspace": "acme"},), {},
     ("list_trust_policies", ({"workspace": "acme"},), {})),
    ("get_trust_policy", ("p1",), {}, ("get_trust_policy", ("p1",), {})),
]  # fmt: skip


@pytest.mark.parametrize(("method", "args", "kwargs", "expected"), DELEGATION)
def test_python_api_methods_delegate_to_the_service(
    app: Flask,
    tokens: AccessTokens,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    recorder = Recorder()
    monkeypatch.setitem(app.extensions, SERVICE_KEY, recorder)
    result = getattr(tokens, method)(*args, **kwargs)
    # Resources are checked against the app's model first.
    calls = [call for call in recorder.calls if call[0] != "resolve"]
    assert calls == [expected]
    if expected[0] != "search":
        assert result == f"result of {expected[0]}"


def test_list_tokens_and_audit_events_return_lists_from_the_service(
    app: Flask, tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setitem(app.extensions, SERVICE_KEY, recorder)
    assert tokens.list_tokens("acme", repository="api") == ["page item"]
    assert tokens.audit_events("id1", limit=5) == ["event"]
    assert recorder.calls == [
        ("resolve", (None, "acme", None, "api"), {}),
        ("search", ("result of resolve",), {}),
        ("events", ("id1", 5), {}),
    ]


def test_every_public_method_is_covered_here() -> None:
    """A new Python API method must be added to the delegation table."""
    covered = {m for m, *_ in DELEGATION} | {"list_tokens", "audit_events"}
    callbacks = {"project_loader", "manager_loader", "allowed_token_types_loader",
                 "resource_exists", "unauthorized_handler", "parent_loader"}  # fmt: skip
    # gateway_route declares, like the callbacks: no service call behind it.
    wiring = {"init_app", "service", "dispose_connections", "document_openapi", "gateway_route"}
    public = {name for name in vars(AccessTokens) if not name.startswith("_")}
    assert public == covered | callbacks | wiring


def test_service_is_the_apps_own(app: Flask, tokens: AccessTokens) -> None:
    assert isinstance(tokens.service(), TokenService)
    assert tokens.service() is tokens.service(app) is app.extensions[SERVICE_KEY]
