"""Workspaces, their members, and projects; deleting a project revokes its tokens."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

PROJECT = "/2.0/workspaces/acme/projects/API"


def test_workspace(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    body = host_client.get("/2.0/workspaces/acme", headers=bearer(mint("account"))).get_json()
    assert body["type"] == "workspace"
    assert body["slug"] == "acme"
    assert body["name"] == "Acme Corp"
    assert body["links"]["html"]["href"] == "http://localhost/acme/"


def test_members(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    body = host_client.get("/2.0/workspaces/acme/members", headers=bearer(mint("account")))
    members = body.get_json()["values"]
    assert [(m["user"]["nickname"], m["permission"]) for m in members] == [
        ("alice", "admin"),
        ("bob", "member"),
    ]
    assert members[0]["type"] == "workspace_membership"


def test_other_workspace_is_403(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    secret = mint("account", "project")
    assert (
        host_client.get("/2.0/workspaces/hobby/members", headers=bearer(secret)).status_code == 403
    )
    assert (
        host_client.get("/2.0/workspaces/hobby/projects/HOB", headers=bearer(secret)).status_code
        == 403
    )


def test_missing_workspace_answers_like_another_workspace(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("account")
    ghost = host_client.get("/2.0/workspaces/ghost", headers=bearer(secret))
    other = host_client.get("/2.0/workspaces/hobby", headers=bearer(secret))
    assert ghost.status_code == other.status_code == 403
    assert ghost.get_json() == other.get_json()


def test_project(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    body = host_client.get(PROJECT, headers=bearer(mint("project", project="API"))).get_json()
    assert body["type"] == "project"
    assert body["key"] == "API"
    assert body["name"] == "Backend API"
    assert body["links"]["self"]["href"] == f"http://localhost{PROJECT}"
    assert body["links"]["html"]["href"] == "http://localhost/acme/workspace/projects/API"


def test_project_token_cannot_read_another_project(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("project", project="API")
    response = host_client.get("/2.0/workspaces/acme/projects/WEB", headers=bearer(secret))
    assert response.status_code == 403


def test_update_project(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("project:admin", "project"))
    response = host_client.put(
        PROJECT, json={"name": "API team", "description": "Backend"}, headers=headers
    )
    assert response.status_code == 200
    body = host_client.get(PROJECT, headers=headers).get_json()
    assert (body["name"], body["description"]) == ("API team", "Backend")
    bad = host_client.put(PROJECT, json={"is_private": 1}, headers=headers)
    assert bad.status_code == 400


def test_create_project(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("project:admin", "project"))
    path = "/2.0/workspaces/acme/projects"
    created = host_client.post(path, json={"key": "OPS", "name": "Operations"}, headers=headers)
    assert created.status_code == 201
    assert created.headers["Location"] == "http://localhost/2.0/workspaces/acme/projects/OPS"
    assert host_client.get(created.headers["Location"], headers=headers).status_code == 200
    for body in ({"key": "OPS", "name": "Again"}, {"key": "lower", "name": "x"}, {"key": "X"}):
        assert host_client.post(path, json=body, headers=headers).status_code == 400


def test_missing_project_is_404(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("project", "project:admin"))
    assert host_client.get("/2.0/workspaces/acme/projects/NOPE", headers=headers).status_code == 404
    assert (
        host_client.delete("/2.0/workspaces/acme/projects/NOPE", headers=headers).status_code == 404
    )


def test_delete_project_revokes_its_tokens_and_its_repositories_tokens(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    project_token = mint("project", project="API", name="project")
    repo_token = mint("repository", repository="lib", name="lib")
    web_token = mint("repository", repository="web", name="web")
    admin = mint("project:admin", "project", name="admin")
    assert host_client.delete(PROJECT, headers=bearer(admin)).status_code == 204

    assert host_client.get(PROJECT, headers=bearer(project_token)).status_code == 401
    lib = host_client.get("/2.0/repositories/acme/lib", headers=bearer(repo_token))
    assert lib.status_code == 401
    web = host_client.get("/2.0/repositories/acme/web", headers=bearer(web_token))
    assert web.status_code == 200
    assert host_client.get(PROJECT, headers=bearer(admin)).status_code == 404
