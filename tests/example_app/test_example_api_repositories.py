"""The repository routes: Bitbucket shapes, moving, creating and deleting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app.gitrepos import has_main_branch
from example_app.gitrepos import repository_path

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"


def git_dir(app: Flask, workspace: str, slug: str) -> Path:
    with app.app_context():
        return repository_path(workspace, slug)


def test_repository_in_bitbucket_shape(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    body = host_client.get(REPO, headers=bearer(mint("repository", repository="api"))).get_json()
    assert body["type"] == "repository"
    assert body["slug"] == "api"
    assert body["full_name"] == "acme/api"
    assert body["uuid"].startswith("{") and body["uuid"].endswith("}")
    assert body["links"]["self"]["href"] == "http://localhost/2.0/repositories/acme/api"
    assert body["links"]["html"]["href"] == "http://localhost/acme/api"
    assert body["links"]["clone"] == [{"name": "https", "href": "http://localhost/acme/api.git"}]
    assert body["project"]["key"] == "API"
    assert body["project"]["type"] == "project"
    assert body["workspace"]["slug"] == "acme"
    assert body["mainbranch"] == {"type": "branch", "name": "main"}
    assert body["is_private"] is True


def test_token_of_another_repository_gets_403(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository", repository="api")
    response = host_client.get("/2.0/repositories/acme/web", headers=bearer(secret))
    assert response.status_code == 403
    missing = host_client.get("/2.0/repositories/acme/missing", headers=bearer(secret))
    assert missing.status_code == 403
    assert missing.get_json() == response.get_json()


def test_unknown_repository_is_404_in_bitbucket_shape(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    response = host_client.get("/2.0/repositories/acme/missing", headers=bearer(mint("project")))
    assert response.status_code == 404
    assert response.get_json() == {
        "type": "error",
        "error": {"message": "Repository acme/missing not found."},
    }


def test_unknown_api_path_is_404_json(host_client: FlaskClient) -> None:
    response = host_client.get("/2.0/nothing/here")
    assert response.status_code == 404
    assert response.get_json()["type"] == "error"


def test_update_repository(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    secret = mint("repository:admin", "repository", repository="api")
    response = host_client.put(
        REPO,
        json={"name": "The API", "description": "Backend", "is_private": False},
        headers=bearer(secret),
    )
    assert response.status_code == 200
    body = host_client.get(REPO, headers=bearer(secret)).get_json()
    assert (body["name"], body["description"], body["is_private"]) == ("The API", "Backend", False)


def test_update_needs_json(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    secret = mint("repository:admin", repository="api")
    response = host_client.put(REPO, data="name=x", headers=bearer(secret))
    assert response.status_code == 415
    assert response.get_json()["type"] == "error"


def test_update_rejects_bad_fields(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    secret = mint("repository:admin", repository="api")
    for body, field in [
        ({"is_private": "yes"}, "is_private"),
        ({"name": 3}, "name"),
        ({"project": "WEB"}, "project"),
        ({"project": {"key": "NOPE"}}, "project"),
    ]:
        response = host_client.put(REPO, json=body, headers=bearer(secret))
        assert response.status_code == 400
        assert field in response.get_json()["error"]["fields"]
    assert host_client.put(REPO, json=[1], headers=bearer(secret)).status_code == 400


def test_moving_a_repository_retargets_project_tokens(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    api_token = mint("repository", project="API", name="api project")
    web_token = mint("repository", project="WEB", name="web project")
    admin = mint("repository:admin", repository="api", name="admin")
    assert host_client.get(REPO, headers=bearer(api_token)).status_code == 200
    assert host_client.get(REPO, headers=bearer(web_token)).status_code == 403

    response = host_client.put(REPO, json={"project": {"key": "WEB"}}, headers=bearer(admin))
    assert response.status_code == 200
    assert response.get_json()["project"]["key"] == "WEB"

    assert host_client.get(REPO, headers=bearer(api_token)).status_code == 403
    assert host_client.get(REPO, headers=bearer(web_token)).status_code == 200


def test_project_token_reaches_a_repository_added_later(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    project_token = mint("repository", project="API", name="project")
    workspace_token = mint("repository:admin", name="workspace")
    path = "/2.0/repositories/acme/tools"
    assert host_client.get(path, headers=bearer(project_token)).status_code == 403

    response = host_client.post(
        path,
        json={"project": {"key": "API"}, "description": "Scripts", "is_private": False},
        headers=bearer(workspace_token),
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "http://localhost/2.0/repositories/acme/tools"
    assert response.get_json()["is_private"] is False
    assert has_main_branch(git_dir(host_app, "acme", "tools"))
    assert host_client.get(path, headers=bearer(project_token)).status_code == 200


def test_create_repository_validation(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository:admin")
    bad_slug = host_client.post("/2.0/repositories/acme/Bad Slug", json={}, headers=bearer(secret))
    assert bad_slug.status_code == 400
    taken = host_client.post(REPO, json={}, headers=bearer(secret))
    assert taken.status_code == 400
    assert "already exists" in taken.get_json()["error"]["message"]
    project = host_client.post(
        "/2.0/repositories/acme/x", json={"project": {"key": "NOPE"}}, headers=bearer(secret)
    )
    assert project.status_code == 400
    default = host_client.post("/2.0/repositories/acme/x", json={}, headers=bearer(secret))
    assert default.status_code == 201
    assert default.get_json()["project"]["key"] == "API"


def test_no_token_can_be_made_for_a_missing_workspace(mint: Mint) -> None:
    # A workspace that does not exist has no plan, so it gets no tokens: a
    # typo cannot make a token that works nowhere.
    with pytest.raises(ValueError, match="ghost"):
        mint("repository:admin", workspace="ghost")


def test_project_token_cannot_create_repositories(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository:admin", project="API")
    response = host_client.post("/2.0/repositories/acme/x", json={}, headers=bearer(secret))
    assert response.status_code == 403


def test_delete_repository_revokes_its_tokens(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    reader = mint("repository", repository="api", name="reader")
    deleter = mint("repository:delete", repository="api", name="deleter")
    project_token = mint("repository", project="API", name="project")
    assert host_client.delete(REPO, headers=bearer(deleter)).status_code == 204

    for secret in (reader, deleter):
        response = host_client.get(REPO, headers=bearer(secret))
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # A token on the project lives on; the repository is simply gone.
    assert host_client.get(REPO, headers=bearer(project_token)).status_code == 403
    lib = host_client.get("/2.0/repositories/acme/lib", headers=bearer(project_token))
    assert lib.status_code == 200
    assert not git_dir(host_app, "acme", "api").exists()


def test_recreated_repository_does_not_revive_old_tokens(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    old = mint("repository", repository="api", name="old")
    admin = mint("repository:admin", "repository:delete", name="admin")
    assert host_client.delete(REPO, headers=bearer(admin)).status_code == 204
    assert host_client.post(REPO, json={}, headers=bearer(admin)).status_code == 201
    assert host_client.get(REPO, headers=bearer(old)).status_code == 401


def test_delete_unknown_repository_is_404(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository:delete")
    assert (
        host_client.delete("/2.0/repositories/acme/nope", headers=bearer(secret)).status_code == 404
    )
