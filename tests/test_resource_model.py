"""A declared resource model, at the level of the decorator and the Python
API: the three shapes of app that pretended to be Bitbucket before.

- a microblog: one level (users) with ``<int:>`` ids;
- a SaaS: organizations and projects, a flat item URL found by a resolver;
- a blog: an owner id in the request body.

Each runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask import jsonify
from flask import request
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import current_token
from flask_accesstokens import Level
from flask_accesstokens import require_scope
from flask_accesstokens import ResourceModel
from flask_accesstokens import ScopeCatalog
from flask_accesstokens import UnknownScopeError

ITEMS = {1: (7, 42), 2: (7, 43), 3: (8, 50)}  # item -> (organization, project)


def saas_catalog() -> ScopeCatalog:
    catalog = ScopeCatalog()
    catalog.register("items:read", label="Items: Read")
    catalog.register("items:write", implies=["items:read"], label="Items: Write")
    catalog.register("projects:read", label="Projects: Read")
    catalog.register("org:admin", token_types=["organization"], label="Organization: Admin")
    return catalog


def make_saas(database_uri: str) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=database_uri, TESTING=True)
    db = SQLAlchemy(app)
    model = ResourceModel(
        Level("organization", arg="org_id"),
        Level("project", arg="project_id"),
    )
    tokens = AccessTokens(app, db=db, scopes=saas_catalog(), resources=model)

    @app.get("/orgs/<int:org_id>/projects/<int:project_id>/items")
    @require_scope("items:read")
    def project_items(org_id: int, project_id: int) -> Any:
        return jsonify(token=current_token.id)

    @app.get("/orgs/<int:org_id>/settings")
    @require_scope("org:admin")
    def org_settings(org_id: int) -> Any:
        return jsonify(ok=True)

    def item_resource(item_id: int) -> dict[str, int] | None:
        found = ITEMS.get(item_id)
        return None if found is None else {"organization": found[0], "project": found[1]}

    @app.post("/items/<int:item_id>")
    @require_scope("items:write", resource=item_resource)
    def update_item(item_id: int) -> Any:
        return jsonify(updated=item_id)

    @app.get("/projects")
    @require_scope("projects:read", bind=False)
    def all_projects() -> Any:
        return jsonify(type=current_token.type)

    @app.get("/orgs/<int:org_id>/listing")
    @require_scope("items:read", container=True)
    def listing(org_id: int) -> Any:
        return jsonify(
            sorted(
                item
                for item, (org, project) in ITEMS.items()
                if org == org_id
                and current_token.reaches({"organization": org, "project": project})
            )
        )

    with app.app_context():
        db.create_all()
    return app, db, tokens


@pytest.fixture
def saas(database_uri: str) -> Iterator[tuple[Flask, AccessTokens]]:
    app, db, tokens = make_saas(database_uri)
    with app.app_context():
        yield app, tokens
    with app.app_context():  # the session is gone: every connection is back
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_integer_ids_bind_by_their_string(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    new = tokens.create_token(
        name="ci", scopes=["items:read"], resource={"organization": 7, "project": 42}
    )
    assert new.token.type == "project"
    assert new.token.resource == {"organization": "7", "project": "42"}
    client = app.test_client()
    ok = client.get("/orgs/7/projects/42/items", headers=bearer(new.secret))
    assert ok.status_code == 200
    assert ok.headers["X-Credential-Type"] == "project_access_token"
    other = client.get("/orgs/7/projects/43/items", headers=bearer(new.secret))
    assert other.status_code == 403
    body = other.get_json()
    assert body["error"]["message"] == "This access token is not for this project."
    assert body["error"]["detail"] == {"reason": "wrong_resource"}
    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
    # The same answer for a project that does not exist.
    missing = client.get("/orgs/7/projects/999/items", headers=bearer(new.secret))
    assert missing.status_code == 403 and missing.get_json() == body


def test_organization_token_reaches_everything_inside(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    new = tokens.create_token(
        name="org", scopes=["items:read", "org:admin"], resource={"organization": "7"}
    )
    client = app.test_client()
    assert client.get("/orgs/7/projects/42/items", headers=bearer(new.secret)).status_code == 200
    assert client.get("/orgs/7/settings", headers=bearer(new.secret)).status_code == 200
    refused = client.get("/orgs/70/projects/42/items", headers=bearer(new.secret))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "This access token is not for this project."


def test_scope_refusal_keeps_required_and_granted(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    new = tokens.create_token(name="r", scopes=["projects:read"], resource={"organization": 7})
    response = app.test_client().get("/orgs/7/projects/42/items", headers=bearer(new.secret))
    assert response.status_code == 403
    assert response.get_json()["error"]["detail"] == {
        "reason": "insufficient_scope",
        "required": ["items:read"],
        "granted": ["projects:read"],
    }


def test_a_level_a_scope_is_not_for_is_refused_at_creation(
    saas: tuple[Flask, AccessTokens],
) -> None:
    _, tokens = saas
    with pytest.raises(ValueError, match="scopes: a project token cannot hold 'org:admin'"):
        tokens.create_token(
            name="x", scopes=["org:admin"], resource={"organization": 7, "project": 1}
        )


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ({"project": 42}, "organization"),
        ({"organization": "a/b"}, "organization"),
        ({"organization": " 7"}, "organization"),
        ({"organization": "."}, "organization"),
        ({"organization": ".."}, "organization"),
        ({"organization": "x" * 256}, "organization"),
        ({"organization": 7, "project": "\x00"}, "project"),
        ({"organization": 7, "project": True}, "project"),
        ({"organization": 7, "team": 1}, "resource"),
        ({}, "resource"),
    ],
)
def test_bad_resources_are_refused_naming_the_field(
    saas: tuple[Flask, AccessTokens], resource: dict[str, Any], field: str
) -> None:
    _, tokens = saas
    with pytest.raises(ValueError) as info:
        tokens.create_token(name="x", scopes=["items:read"], resource=resource)
    assert str(info.value).startswith(f"{field}: ")
    assert tokens.service().search(tokens.service().model.resource({"organization": 7})).total == 0


def test_other_letters_are_names(saas: tuple[Flask, AccessTokens]) -> None:
    _, tokens = saas
    new = tokens.create_token(name="x", scopes=["items:read"], resource={"organization": "josé"})
    assert new.token.resource == {"organization": "josé"}
    assert [t.id for t in tokens.list_tokens(resource={"organization": "josé"})] == [new.token.id]


def test_flat_url_uses_the_resolver(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    project = tokens.create_token(
        name="p", scopes=["items:write"], resource={"organization": 7, "project": 42}
    )
    org = tokens.create_token(name="o", scopes=["items:write"], resource={"organization": 7})
    client = app.test_client()
    assert client.post("/items/1", headers=bearer(project.secret)).status_code == 200
    assert client.post("/items/2", headers=bearer(project.secret)).status_code == 403
    assert client.post("/items/2", headers=bearer(org.secret)).status_code == 200
    assert client.post("/items/3", headers=bearer(org.secret)).status_code == 403
    # No such item: answered like another resource's.
    missing = client.post("/items/99", headers=bearer(org.secret))
    assert missing.status_code == 403
    assert missing.get_json()["error"]["detail"] == {"reason": "wrong_resource"}


def test_resolver_runs_only_after_authentication_and_scope(
    saas: tuple[Flask, AccessTokens],
) -> None:
    app, tokens = saas
    calls: list[int] = []
    view = app.view_functions["update_item"]
    requirement = view.__accesstokens_requirement__
    original = requirement.resource

    def counting(item_id: int) -> Any:
        calls.append(item_id)
        return original(item_id=item_id)

    object.__setattr__(requirement, "resource", counting)
    try:
        weak = tokens.create_token(name="w", scopes=["items:read"], resource={"organization": 7})
        client = app.test_client()
        assert client.post("/items/1").status_code == 401
        assert client.post("/items/1", headers=bearer(weak.secret)).status_code == 403
        assert calls == []
    finally:
        object.__setattr__(requirement, "resource", original)


def test_bind_false_is_scope_only(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    new = tokens.create_token(
        name="p", scopes=["projects:read"], resource={"organization": 8, "project": 50}
    )
    client = app.test_client()
    assert client.get("/projects", headers=bearer(new.secret)).get_json() == {"type": "project"}
    other = tokens.create_token(name="i", scopes=["items:read"], resource={"organization": 8})
    assert client.get("/projects", headers=bearer(other.secret)).status_code == 403


def test_container_listing_filters_with_reaches(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    project = tokens.create_token(
        name="p", scopes=["items:read"], resource={"organization": 7, "project": 43}
    )
    org = tokens.create_token(name="o", scopes=["items:read"], resource={"organization": 7})
    client = app.test_client()
    assert client.get("/orgs/7/listing", headers=bearer(project.secret)).get_json() == [2]
    assert client.get("/orgs/7/listing", headers=bearer(org.secret)).get_json() == [1, 2]
    assert client.get("/orgs/8/listing", headers=bearer(org.secret)).status_code == 403


def test_revoke_resource_takes_its_subtree_only(saas: tuple[Flask, AccessTokens]) -> None:
    app, tokens = saas
    org = tokens.create_token(name="o", scopes=["items:read"], resource={"organization": 7})
    inside = tokens.create_token(
        name="p", scopes=["items:read"], resource={"organization": 7, "project": 42}
    )
    neighbour = tokens.create_token(name="n", scopes=["items:read"], resource={"organization": 70})
    prefix = tokens.create_token(name="q", scopes=["items:read"], resource={"organization": "7x"})
    page = tokens.search_tokens(resource={"organization": 7}, exact=False)
    assert {t.id for t in page.items} == {org.token.id, inside.token.id}
    assert tokens.revoke_resource_tokens(resource={"organization": 7}) == 2
    client = app.test_client()
    assert client.get("/orgs/7/projects/42/items", headers=bearer(inside.secret)).status_code == 401
    assert client.get("/orgs/70/settings", headers=bearer(neighbour.secret)).status_code == 403
    assert tokens.get_token(prefix.token.id).revoked_at is None  # type: ignore[union-attr]


def test_explicit_model_refuses_view_args_setting() -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI="sqlite://",
        ACCESSTOKENS_VIEW_ARGS={"workspace": "ws"},
    )
    db = SQLAlchemy(app)
    with pytest.raises(ValueError, match="ACCESSTOKENS_VIEW_ARGS"):
        AccessTokens(
            app, db=db, scopes=saas_catalog(), resources=ResourceModel(Level("organization"))
        )


def test_catalog_naming_levels_the_model_lacks_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    db = SQLAlchemy(app)
    with pytest.raises(ValueError, match="resource model lacks"):
        AccessTokens(app, db=db, resources=ResourceModel(Level("organization")))


# -- a microblog: one level, integer ids -------------------------------------------------------


def make_microblog(database_uri: str) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI=database_uri, TESTING=True)
    db = SQLAlchemy(app)
    catalog = ScopeCatalog()
    catalog.register("users:read")
    catalog.register("posts:write")
    tokens = AccessTokens(
        app, db=db, scopes=catalog, resources=ResourceModel(Level("user", arg="id"))
    )

    @app.get("/api/users/<int:id>")
    @require_scope("users:read")
    def user(id: int) -> Any:  # noqa: A002 - microblog's own signature
        return jsonify(id=id)

    def post_owner() -> dict[str, object] | None:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "author_id" not in body:
            return None
        return {"user": body["author_id"]}

    @app.post("/api/posts")
    @require_scope("posts:write", resource=post_owner)
    def new_post() -> Any:
        return jsonify(created=True), 201

    with app.app_context():
        db.create_all()
    return app, db, tokens


@pytest.fixture
def microblog(database_uri: str) -> Iterator[tuple[Flask, AccessTokens]]:
    app, db, tokens = make_microblog(database_uri)
    with app.app_context():
        yield app, tokens
    with app.app_context():  # the session is gone: every connection is back
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_microblog_user_token_on_int_routes(microblog: tuple[Flask, AccessTokens]) -> None:
    app, tokens = microblog
    new = tokens.create_token(name="mine", scopes=["users:read"], resource={"user": 1})
    client = app.test_client()
    ok = client.get("/api/users/1", headers=bearer(new.secret))
    assert ok.status_code == 200
    assert ok.headers["X-Credential-Type"] == "user_access_token"
    refused = client.get("/api/users/2", headers=bearer(new.secret))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == "This access token is not for this user."
    assert "repositor" not in refused.get_data(as_text=True)


def test_owner_id_in_the_body(microblog: tuple[Flask, AccessTokens]) -> None:
    app, tokens = microblog
    new = tokens.create_token(name="w", scopes=["posts:write"], resource={"user": 3})
    client = app.test_client()
    mine = client.post("/api/posts", json={"author_id": 3}, headers=bearer(new.secret))
    assert mine.status_code == 201
    theirs = client.post("/api/posts", json={"author_id": 4}, headers=bearer(new.secret))
    assert theirs.status_code == 403
    no_owner = client.post("/api/posts", json={"title": "x"}, headers=bearer(new.secret))
    assert no_owner.status_code == 403
    bad_owner = client.post("/api/posts", json={"author_id": "a/b"}, headers=bearer(new.secret))
    assert bad_owner.status_code == 403


def test_reaches_takes_a_mapping(microblog: tuple[Flask, AccessTokens]) -> None:
    app, tokens = microblog
    new = tokens.create_token(name="r", scopes=["users:read"], resource={"user": 5})
    seen: list[bool] = []

    @app.get("/probe")
    @require_scope("users:read", bind=False)
    def probe() -> Any:
        seen.extend([current_token.reaches({"user": 5}), current_token.reaches({"user": "6"})])
        return jsonify(resource=current_token.resource.values)

    assert app.test_client().get("/probe", headers=bearer(new.secret)).get_json() == {
        "resource": {"user": "5"}
    }
    assert seen == [True, False]


# -- scope names: the app's own catalog, checked at the first request ---------------------------


def test_misspelt_scope_fails_at_first_request_naming_view_and_near_miss() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    db = SQLAlchemy(app)
    AccessTokens(app, db=db, scopes=saas_catalog(), resources=ResourceModel(Level("organization")))

    @app.get("/orgs/<organization>/items")
    @require_scope("items:wirte")  # a typo: nothing is refused at import
    def items(organization: str) -> Any:
        return jsonify(ok=True)

    client = app.test_client()
    with pytest.raises(UnknownScopeError) as info:
        client.get("/orgs/1/items")
    message = str(info.value)
    assert "'items:wirte'" in message and "'items'" in message
    assert "did you mean 'items:write'?" in message
    with pytest.raises(UnknownScopeError):  # still refused: the app is not fit to serve
        client.get("/orgs/1/items")


def test_bitbucket_near_miss_is_fine_in_an_apps_own_catalog() -> None:
    catalog = ScopeCatalog()
    catalog.register("projects:read")
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    db = SQLAlchemy(app)
    tokens = AccessTokens(
        app, db=db, scopes=catalog, resources=ResourceModel(Level("team", arg="team"))
    )

    @app.get("/teams/<team>/projects")
    @require_scope("projects:read")
    def team_projects(team: str) -> Any:
        return jsonify(ok=True)

    with app.app_context():
        db.create_all()
        new = tokens.create_token(name="t", scopes=["projects:read"], resource={"team": "a"})
    assert app.test_client().get("/teams/a/projects", headers=bearer(new.secret)).status_code == 200
