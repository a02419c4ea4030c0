"""The scope catalog: the contract's table, transitive implication, per-type
rules, custom scopes, and a property test of the closure."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from helpers import make_app
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from flask_accesstokens import AccessTokens
from flask_accesstokens import default_catalog
from flask_accesstokens import require_any_scope
from flask_accesstokens import require_scope
from flask_accesstokens import ScopeCatalog

#: The contract's table: every scope and what it grants, transitively.
CLOSURES: dict[str, set[str]] = {
    "repository": {"repository"},
    "repository:write": {"repository:write", "repository"},
    "repository:admin": {"repository:admin"},
    "repository:delete": {"repository:delete"},
    "pullrequest": {"pullrequest", "repository"},
    "pullrequest:write": {"pullrequest:write", "pullrequest", "repository:write", "repository"},
    "webhook": {"webhook"},
    "pipeline": {"pipeline"},
    "pipeline:write": {"pipeline:write", "pipeline"},
    "pipeline:variable": {"pipeline:variable", "pipeline"},
    "runner": {"runner"},
    "runner:write": {"runner:write", "runner"},
    "project": {"project", "repository"},
    "project:admin": {"project:admin"},
    "account": {"account"},
}
ALL = {"repository", "project", "workspace"}
#: Which token types may hold each scope.
TYPES: dict[str, set[str]] = {name: set(ALL) for name in CLOSURES}
TYPES["project"] = {"project", "workspace"}
TYPES["project:admin"] = {"workspace"}
TYPES["account"] = {"workspace"}
SCOPES = list(CLOSURES)
WHERE = {
    "repository": {"repository": "api"},
    "project": {"project": "API"},
    "workspace": {},
}


def test_the_catalog_has_exactly_the_contract_scopes() -> None:
    assert [s.name for s in default_catalog()] == SCOPES


@pytest.mark.parametrize("scope", SCOPES)
def test_implication_positive_and_negative(scope: str) -> None:
    """Exactly what the contract says: everything implied, nothing else."""
    catalog = default_catalog()
    assert catalog.closure([scope]) == CLOSURES[scope]
    assert catalog.implied_by([scope]) == CLOSURES[scope] - {scope}


@pytest.mark.parametrize("scope", ["repository:admin", "repository:delete", "project:admin"])
def test_admin_and_delete_grant_nothing_else(scope: str) -> None:
    assert default_catalog().closure([scope]) == {scope}


def test_closure_of_several_scopes_is_the_union() -> None:
    catalog = default_catalog()
    for a, b in itertools.combinations(SCOPES, 2):
        assert catalog.closure([a, b]) == CLOSURES[a] | CLOSURES[b]


def test_unknown_names_grant_nothing() -> None:
    catalog = default_catalog()
    assert catalog.closure(["admin", "*", "repository:*"]) == frozenset()
    assert catalog.closure(["nope", "pipeline"]) == {"pipeline"}


@pytest.mark.parametrize("token_type", sorted(ALL))
def test_allowed_for_follows_the_contract(token_type: str) -> None:
    allowed = [s.name for s in default_catalog().allowed_for(token_type)]
    assert allowed == [s for s in SCOPES if token_type in TYPES[s]]


def test_create_token_enforces_which_type_may_hold_a_scope(
    app: Flask, tokens: AccessTokens
) -> None:
    for scope, token_type in itertools.product(SCOPES, sorted(ALL)):
        where: dict[str, Any] = WHERE[token_type]
        if token_type in TYPES[scope]:
            new = tokens.create_token(name="t", workspace="acme", scopes=[scope], **where)
            assert new.token.type == token_type
            assert list(new.token.scopes) == [scope]
        else:
            with pytest.raises(ValueError, match=f"{token_type} token cannot hold"):
                tokens.create_token(name="t", workspace="acme", scopes=[scope], **where)


def test_scopes_are_stored_as_granted_without_implied_ones(
    app: Flask, tokens: AccessTokens
) -> None:
    new = tokens.create_token(
        name="t", workspace="acme", scopes=["pullrequest:write", "pipeline:write"]
    )
    assert set(new.token.scopes) == {"pullrequest:write", "pipeline:write"}
    assert set(tokens.get_token(new.token.id).scopes) == {"pullrequest:write", "pipeline:write"}


def _matrix_app(tmp_path: Path) -> tuple[Flask, SQLAlchemy, dict[str, str]]:
    app, db, tokens = make_app(f"sqlite:///{tmp_path / 'matrix.sqlite'}")
    for scope in SCOPES:

        def view(workspace: str) -> Any:
            return jsonify(ok=True)

        endpoint = "needs_" + scope.replace(":", "_")
        view.__name__ = endpoint
        app.add_url_rule(f"/matrix/<workspace>/{scope}", endpoint, require_scope(scope)(view))
    with app.app_context():
        secrets = {
            scope: tokens.create_token(name=scope, workspace="acme", scopes=[scope]).secret
            for scope in SCOPES
        }
    return app, db, secrets


def test_http_every_granted_scope_against_every_required_scope(tmp_path: Path) -> None:
    """Positive and negative, through the real request path."""
    app, db, secrets = _matrix_app(tmp_path)
    client = app.test_client()
    try:
        for granted, required in itertools.product(SCOPES, SCOPES):
            response = client.get(f"/matrix/acme/{required}", headers=bearer(secrets[granted]))
            expected = 200 if required in CLOSURES[granted] else 403
            assert response.status_code == expected, (granted, required)
            if expected == 403:
                assert response.json["error"]["detail"] == {
                    "reason": "insufficient_scope",
                    "required": [required],
                    "granted": [granted],
                }
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


# -- decoration time -----------------------------------------------------------


@pytest.mark.parametrize("decorator", [require_scope, require_any_scope])
@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("repository:wirte", "repository:write"),
        ("Repository", "repository"),
        ("repositories", "repository"),
        ("pullrequests:write", "pullrequest:write"),
    ],
)
def test_a_typo_of_a_bitbucket_scope_fails_at_the_first_request_with_the_near_miss(
    decorator: Any, typo: str, meant: str, tmp_path: Path
) -> None:
    """(third round) Nothing is refused at import: an app with its own
    catalog may mean any name. The app's catalog checks every protected view
    when the app first serves, naming the view and the near miss."""
    protect = decorator("repository", typo)  # no error here
    app, db, _ = make_app(f"sqlite:///{tmp_path / 't.sqlite'}")
    app.add_url_rule("/typo/<workspace>", "typo_view", protect(lambda **kw: "x"))
    with pytest.raises(ValueError, match=f"did you mean {meant!r}") as info:
        app.test_client().get("/typo/acme")
    assert "'typo_view'" in str(info.value)
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("decorator", [require_scope, require_any_scope])
def test_a_scope_no_catalog_knows_fails_when_the_app_first_serves_the_view(
    decorator: Any, database_uri: str
) -> None:
    # Not a Bitbucket name: it could be an app's own, so only the app can tell.
    protect = decorator("repository", "no-such-scope")
    app, db, tokens = make_app(database_uri)  # TESTING: the error propagates
    app.add_url_rule("/mystery/<workspace>/<repo_slug>", "mystery", protect(lambda **kw: "x"))
    with app.app_context():
        new = tokens.create_token(
            name="t", workspace="acme", repository="api", scopes=["repository"]
        )
        client = app.test_client()
        for headers in ({"Authorization": f"Bearer {new.secret}"}, {}):
            with pytest.raises(ValueError, match="no-such-scope"):
                client.get("/mystery/acme/api", headers=headers)
        db.session.remove()
        tokens.dispose_connections(app)
        db.engine.dispose()


@pytest.mark.parametrize("decorator", [require_scope, require_any_scope])
def test_no_scope_at_all_fails_at_decoration_time(decorator: Any) -> None:
    with pytest.raises(ValueError):
        decorator()


def test_names_that_cannot_be_scopes_fail_at_decoration_time() -> None:
    for name in ("", "two words", "tab\there", "line\n"):
        with pytest.raises(ValueError):
            require_scope(name)


# -- custom scopes -------------------------------------------------------------


def test_register_refuses_bad_definitions() -> None:
    catalog = default_catalog()
    with pytest.raises(ValueError):
        catalog.register("")
    with pytest.raises(ValueError):
        catalog.register("two words")
    with pytest.raises(ValueError):
        catalog.register("t-custom-a", implies=["t-never-registered"])
    with pytest.raises(ValueError):
        catalog.register("t-custom-c", token_types=[])
    # A level the model lacks is refused when the app declares its model.
    catalog.register("t-custom-b", token_types=["organisation"])
    with pytest.raises(ValueError, match="'organisation'"):
        catalog.check_levels(["workspace", "project", "repository"])


def test_registered_implications_are_transitive() -> None:
    catalog = default_catalog()
    catalog.register("t-issue", implies=["repository"])
    catalog.register("t-issue:write", implies=["t-issue", "pullrequest:write"])
    assert catalog.closure(["t-issue:write"]) == {
        "t-issue:write",
        "t-issue",
        "repository",
        "pullrequest:write",
        "pullrequest",
        "repository:write",
    }


def test_registering_on_one_catalog_leaves_another_alone() -> None:
    mine = default_catalog()
    mine.register("t-private")
    assert "t-private" in mine
    assert "t-private" not in default_catalog()


def test_custom_scopes_protect_routes(tmp_path: Path) -> None:
    catalog = default_catalog()
    catalog.register("issue", label="Issues: Read")
    catalog.register("issue:write", implies=["issue"], label="Issues: Write")
    catalog.register("billing", token_types=["workspace"])

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'custom.sqlite'}"
    )
    db = SQLAlchemy()
    db.init_app(app)
    tokens = AccessTokens(app, db=db, scopes=catalog)

    @app.get("/repositories/<workspace>/<repo_slug>/issues")
    @require_scope("issue")
    def issues(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    @app.post("/repositories/<workspace>/<repo_slug>/issues")
    @require_scope("issue:write")
    def new_issue(workspace: str, repo_slug: str) -> Any:
        return jsonify(ok=True)

    try:
        with app.app_context():
            db.create_all()
            assert tokens.scopes is catalog
            writer = tokens.create_token(
                name="w", workspace="acme", repository="api", scopes=["issue:write"]
            ).secret
            reader = tokens.create_token(
                name="r", workspace="acme", repository="api", scopes=["issue"]
            ).secret
            with pytest.raises(ValueError, match="cannot hold"):
                tokens.create_token(
                    name="b", workspace="acme", repository="api", scopes=["billing"]
                )
            tokens.create_token(name="b", workspace="acme", scopes=["billing"])
        client = app.test_client()
        url = "/repositories/acme/api/issues"
        assert client.get(url, headers=bearer(writer)).status_code == 200
        assert client.post(url, headers=bearer(writer)).status_code == 200
        assert client.get(url, headers=bearer(reader)).status_code == 200
        response = client.post(url, headers=bearer(reader))
        assert response.status_code == 403
        assert 'scope="issue:write"' in response.headers["WWW-Authenticate"]
    finally:
        with app.app_context():
            AccessTokens.dispose_connections()
            db.engine.dispose()


def test_default_app_refuses_a_scope_only_another_catalog_knows(
    app: Flask, tokens: AccessTokens
) -> None:
    default_catalog().register("t-elsewhere")  # known to decorators, not to this app
    with pytest.raises(ValueError, match="t-elsewhere"):
        tokens.create_token(name="t", workspace="acme", scopes=["t-elsewhere"])


# -- property test -------------------------------------------------------------


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[ScopeCatalog, dict[str, set[str]]]:
    """A random catalog: each scope implies some of the ones before it (a DAG)."""
    size = draw(st.integers(min_value=1, max_value=10))
    names = [f"p{i}" for i in range(size)]
    catalog = ScopeCatalog()
    edges: dict[str, set[str]] = {}
    for i, name in enumerate(names):
        implied = draw(st.sets(st.sampled_from(names[:i]), max_size=3)) if i else set()
        catalog.register(name, implies=sorted(implied))
        edges[name] = implied
    return catalog, edges


def _reachable(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    """Reference closure: a naive fixpoint, independent of the implementation."""
    result = {s for s in start if s in edges}
    while True:
        more = result | {t for s in result for t in edges[s]}
        if more == result:
            return result
        result = more


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_closure_properties_on_random_catalogs(data: st.DataObject) -> None:
    catalog, edges = data.draw(catalogs())
    names = sorted(edges) + ["unknown", "p99"]
    a = data.draw(st.sets(st.sampled_from(names)))
    b = data.draw(st.sets(st.sampled_from(names)))
    closure = catalog.closure(a)
    # Contains the (known) input.
    assert a & set(edges) <= closure
    # Idempotent.
    assert catalog.closure(closure) == closure
    # Monotone.
    assert catalog.closure(a) <= catalog.closure(a | b)
    # Transitively closed with respect to the catalog.
    for name in closure:
        assert set(catalog.scopes[name].implies) <= closure
    # And the least such set.
    assert closure == _reachable(edges, a)


@settings(max_examples=100, deadline=None)
@given(
    a=st.sets(st.sampled_from(SCOPES + ["nope"])),
    b=st.sets(st.sampled_from(SCOPES + ["nope"])),
)
def test_closure_properties_on_the_default_catalog(a: set[str], b: set[str]) -> None:
    catalog = default_catalog()
    closure = catalog.closure(a)
    assert a - {"nope"} <= closure
    assert catalog.closure(closure) == closure
    assert closure <= catalog.closure(a | b)
    assert closure == set().union(*(CLOSURES[s] for s in a if s in CLOSURES))


def test_an_apps_own_catalog_starts_empty_and_keeps_its_order() -> None:
    """docs/integrating.rst's custom scopes: only the app's, in its order."""
    catalog = ScopeCatalog()
    catalog.register("issues:read", label="Issues: Read")
    catalog.register("issues:write", implies=["issues:read"], label="Issues: Write")
    catalog.register("billing", token_types=["workspace"], label="Billing: Read")
    assert [scope.name for scope in catalog] == ["issues:read", "issues:write", "billing"]
    assert catalog.validate("repository", ["issues:write"]) == ("issues:write",)
    with pytest.raises(ValueError, match="did you mean 'issues:write'"):
        catalog.validate("repository", ["issue:write"])
