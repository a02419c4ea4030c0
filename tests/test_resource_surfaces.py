"""Every surface speaks the app's model: the management JSON API at the
model's paths, the admin pages, the CLI with one option per level, the
served OpenAPI document, and the words people read. Outside the Bitbucket
model nothing mentions workspaces, repositories or git."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessTokens
from flask_accesstokens import Level
from flask_accesstokens import require_scope
from flask_accesstokens import ResourceModel
from flask_accesstokens import ScopeCatalog

BITBUCKET_WORDS = re.compile(r"workspace|repositor|git clone|x-token-auth|\.git\b", re.I)


def make(database_uri: str, **config: Any) -> tuple[Flask, SQLAlchemy, AccessTokens]:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        SQLALCHEMY_DATABASE_URI=database_uri,
        TESTING=True,
        WTF_CSRF_ENABLED=False,
        ACCESSTOKENS_ADMIN_URL_PREFIX="/settings",
        **config,
    )
    db = SQLAlchemy(app)
    catalog = ScopeCatalog()
    catalog.register("items:read", label="Items: Read")
    catalog.register("items:write", implies=["items:read"], label="Items: Write")
    model = ResourceModel(
        Level("organization", arg="org_id"),
        Level("project", arg="project_id"),
    )
    tokens = AccessTokens(app, db=db, scopes=catalog, resources=model)

    @tokens.manager_loader
    def manager(resource: Any) -> str | None:
        return "alice" if resource.values.get("organization") != "locked" else None

    @app.get("/orgs/<int:org_id>/projects/<int:project_id>/items")
    @require_scope("items:read")
    def items(org_id: int, project_id: int) -> Any:
        return jsonify(ok=True)

    with app.app_context():
        db.create_all()
    return app, db, tokens


@pytest.fixture
def parts(database_uri: str) -> Iterator[tuple[Flask, AccessTokens]]:
    app, db, tokens = make(database_uri)
    with app.app_context():
        yield app, tokens
    with app.app_context():  # the session is gone: every connection is back
        AccessTokens.dispose_connections()
        db.engine.dispose()


def test_only_the_models_levels_are_mounted(parts: tuple[Flask, AccessTokens]) -> None:
    app, _ = parts
    rules = [r.rule for r in app.url_map.iter_rules()]
    assert "/api/organizations/<accesstokens_name:organization>/access-tokens" in rules
    assert (
        "/api/organizations/<accesstokens_name:organization>/projects/"
        "<accesstokens_name:project>/access-tokens"
    ) in rules
    assert "/settings/organizations/<accesstokens_name:organization>/access-tokens" in rules
    assert not [r for r in rules if "workspace" in r or "repositor" in r]


def test_json_api_at_the_models_paths(parts: tuple[Flask, AccessTokens]) -> None:
    app, tokens = parts
    client = app.test_client()
    created = client.post(
        "/api/organizations/7/projects/42/access-tokens",
        json={"name": "ci", "scopes": ["items:write"]},
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["type"] == "project"
    assert body["resource"] == {"organization": "7", "project": "42"}
    assert not {"workspace", "project", "repository"} & set(body) - {"project"}
    assert "workspace" not in body and "repository" not in body
    assert created.headers["Location"].endswith(
        f"/api/organizations/7/projects/42/access-tokens/{body['id']}"
    )
    assert client.get("/orgs/7/projects/42/items", headers=bearer(body["token"])).status_code == 200
    listed = client.get("/api/organizations/7/projects/42/access-tokens").get_json()
    assert [t["id"] for t in listed["values"]] == [body["id"]]
    assert client.get("/api/organizations/7/access-tokens").get_json()["values"] == []
    refused = client.post(
        "/api/organizations/7/projects/42/access-tokens",
        json={"name": "ci", "scopes": ["nope"]},
    )
    assert refused.status_code == 400
    denied = client.get("/api/organizations/locked/access-tokens")
    assert denied.status_code == 403
    assert denied.get_json()["error"]["message"] == (
        "You do not have permission to manage the access tokens of organization locked."
    )
    assert tokens.service().model.is_bitbucket() is False


@pytest.mark.parametrize("name", ["josé", "a b", "x.y", "1"])
def test_what_create_token_accepts_the_api_manages(
    parts: tuple[Flask, AccessTokens], name: str
) -> None:
    app, tokens = parts
    client = app.test_client()
    path = f"/api/organizations/{quote(name)}/access-tokens"
    try:
        new = tokens.create_token(name="n", scopes=["items:read"], resource={"organization": name})
    except ValueError:
        assert client.get(path).status_code == 404
        return
    listed = client.get(path)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.get_json()["values"]] == [new.token.id]
    assert client.delete(f"{path}/{new.token.id}").status_code == 204


@pytest.mark.parametrize("name", [".", "..", "%20x", "x%0A", "%00"])
def test_names_the_service_refuses_are_not_routed(
    parts: tuple[Flask, AccessTokens], name: str
) -> None:
    app, _ = parts
    response = app.test_client().get(f"/api/organizations/{name}/access-tokens")
    assert response.status_code == 404


def test_openapi_describes_the_model(parts: tuple[Flask, AccessTokens]) -> None:
    app, _ = parts
    document = app.test_client().get("/api/access-tokens/openapi.json").get_json()
    paths = set(document["paths"])
    assert "/organizations/{organization}/access-tokens" in paths
    assert "/organizations/{organization}/projects/{project}/access-tokens/{token_id}" in paths
    assert not [p for p in paths if "workspace" in p or "repositor" in p]
    schemas = document["components"]["schemas"]
    assert schemas["ProjectScope"]["enum"] == ["items:read", "items:write"]
    assert schemas["AccessToken"]["properties"]["type"]["enum"] == ["organization", "project"]
    assert "workspace" not in schemas["AccessToken"]["properties"]
    operation = document["paths"]["/organizations/{organization}/access-tokens"]["post"]
    assert operation["operationId"] == "createOrganizationAccessToken"
    assert "workspace" not in json.dumps(document["paths"]).lower()


def test_admin_pages_in_the_models_words(parts: tuple[Flask, AccessTokens]) -> None:
    app, tokens = parts
    client = app.test_client()
    page = client.get("/settings/organizations/7/projects/42/access-tokens/new")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "project 42 in organization 7" in text
    assert "A project token works on this project only." in text
    assert not BITBUCKET_WORDS.search(text)
    with client.session_transaction() as session:
        session["_accesstokens_form_ids"] = ["fid"]
    reveal = client.post(
        "/settings/organizations/7/access-tokens/new",
        data={"name": "ci", "scopes": ["items:read"], "form_id": "fid"},
    )
    assert reveal.status_code == 200
    revealed = reveal.get_data(as_text=True)
    assert not BITBUCKET_WORDS.search(revealed)
    listing = client.get("/settings/organizations/7/access-tokens").get_data(as_text=True)
    assert "All tokens in this organization" in listing
    assert not BITBUCKET_WORDS.search(listing)
    overview = client.get("/settings/organizations/7/access-tokens/all")
    assert overview.status_code == 200
    assert not BITBUCKET_WORDS.search(overview.get_data(as_text=True))
    new = client.get("/settings/organizations/7/access-tokens/new").get_data(as_text=True)
    assert "works on this organization and every project in it" in new


def test_cli_has_one_option_per_level(parts: tuple[Flask, AccessTokens]) -> None:
    app, _ = parts
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=[
            "access-tokens", "create", "--organization", "7", "--project", "42",
            "--scope", "items:write", "--name", "ci", "--json",
        ]
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    body = json.loads(made.output)
    assert body["resource"] == {"organization": "7", "project": "42"}
    listed = runner.invoke(args=["access-tokens", "list", "--organization", "7", "--project", "42"])
    assert listed.exit_code == 0 and body["id"] in listed.output
    assert "project 42 in organization 7" in listed.output
    assert not BITBUCKET_WORDS.search(listed.output)
    subtree = runner.invoke(args=["access-tokens", "list", "--organization", "7", "--all"])
    assert body["id"] in subtree.output
    helped = runner.invoke(args=["access-tokens", "create", "--help"])
    assert "--organization" in helped.output and "--workspace" not in helped.output
    bad = runner.invoke(args=["access-tokens", "list", "--project", "42"])
    assert bad.exit_code != 0 and "--organization: required" in bad.output
    revoked = runner.invoke(args=["access-tokens", "revoke", "--organization", "7"])
    assert revoked.exit_code == 0 and "Revoked 1 access token of organization 7" in revoked.output
