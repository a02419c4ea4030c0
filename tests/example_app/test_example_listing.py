"""Listings show what the token reaches; /user and /workspaces are the token's
own; nothing under /2.0 answers a page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gitwork import commit_on

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"


def values(client: FlaskClient, url: str, headers: dict[str, str]) -> list[Any]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.get_json()["values"])


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        ({"repository": "lib"}, ["lib"]),
        ({"project": "API"}, ["api", "lib"]),
        ({"project": "WEB"}, ["web"]),
        ({}, ["api", "lib", "web"]),
    ],
)
def test_repository_listing_shows_what_the_token_reaches(
    host_client: FlaskClient,
    mint: Mint,
    bearer: Headers,
    bound: dict[str, str],
    expected: list[str],
) -> None:
    headers = bearer(mint("repository", **bound))
    listed = values(host_client, "/2.0/repositories/acme", headers)
    assert [repo["slug"] for repo in listed] == expected
    assert values(host_client, "/2.0/repositories/acme/", headers) == listed


def test_project_listing_shows_what_the_token_reaches(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    url = "/2.0/workspaces/acme/projects"
    project = values(host_client, url, bearer(mint("project", project="WEB")))
    assert [p["key"] for p in project] == ["WEB"]
    workspace = values(host_client, url, bearer(mint("project")))
    assert [p["key"] for p in workspace] == ["API", "WEB"]


def test_project_listing_needs_the_project_scope(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    repo_token = bearer(mint("repository", "repository:admin", repository="api"))
    response = host_client.get("/2.0/workspaces/acme/projects", headers=repo_token)
    assert response.status_code == 403
    assert response.get_json()["error"]["detail"]["required"] == ["project"]


def test_listings_refuse_tokens_of_another_workspace(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("project")
    for url in ("/2.0/repositories/hobby", "/2.0/workspaces/hobby/projects"):
        response = host_client.get(url, headers=bearer(secret))
        assert response.status_code == 403
        assert response.get_json()["type"] == "error"


def test_a_moved_repository_leaves_its_old_projects_listing(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    admin = bearer(mint("repository:admin", "repository"))
    moved = host_client.put(f"{REPO}", json={"project": {"key": "WEB"}}, headers=admin)
    assert moved.status_code == 200
    api_token = bearer(mint("repository", project="API"))
    assert [r["slug"] for r in values(host_client, "/2.0/repositories/acme", api_token)] == ["lib"]


def test_listing_pages(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("repository"))
    first = host_client.get("/2.0/repositories/acme?pagelen=2", headers=headers).get_json()
    assert (first["page"], first["pagelen"], first["size"]) == (1, 2, 3)
    assert first["next"] == "http://localhost/2.0/repositories/acme?page=2&pagelen=2"
    second = host_client.get(first["next"], headers=headers).get_json()
    assert [r["slug"] for r in first["values"] + second["values"]] == ["api", "lib", "web"]
    assert "next" not in second


def test_branches_from_git(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    head = commit_on(host_app, "acme", "api", "feature", files={"a": "a\n"}, message="Add a")
    headers = bearer(mint("repository", repository="api"))
    branches = values(host_client, f"{REPO}/refs/branches", headers)
    assert [(b["type"], b["name"]) for b in branches] == [("branch", "feature"), ("branch", "main")]
    assert branches[0]["target"]["hash"] == head
    assert branches[0]["target"]["message"] == "Add a\n"
    assert branches[0]["target"]["author"]["raw"] == "Example App <example-app@example.invalid>"
    one = host_client.get(f"{REPO}/refs/branches/feature", headers=headers).get_json()
    assert one["target"]["hash"] == head
    missing = host_client.get(f"{REPO}/refs/branches/nope", headers=headers)
    assert (missing.status_code, missing.get_json()["type"]) == (404, "error")
    assert host_client.get(f"{REPO}/refs/branches/--all", headers=headers).status_code == 404


def test_commits_from_git_page_by_page(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    made = [
        commit_on(host_app, "acme", "api", "main", files={f"f{i}": "x\n"}, message=f"Commit {i}")
        for i in range(5)
    ]
    headers = bearer(mint("repository", repository="api"))
    url: str | None = f"{REPO}/commits?pagelen=2"
    seen: list[str] = []
    pages = 0
    while url is not None:
        body = host_client.get(url, headers=headers).get_json()
        assert body["pagelen"] == 2 and len(body["values"]) <= 2
        assert "size" not in body  # as on Bitbucket: counting history is what paging avoids
        seen += [commit["hash"] for commit in body["values"]]
        url = body.get("next")
        pages += 1
    assert pages == 3
    assert seen[:5] == made[::-1]
    assert len(seen) == 6  # and the seed's initial commit
    assert values(host_client, f"{REPO}/commits?page=99", headers) == []
    assert values(host_client, f"{REPO}/commits/{made[1]}", headers)[0]["hash"] == made[1]


def test_a_repository_token_cannot_list_another_repositorys_commits(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository", repository="api")
    for path in ("commits", "refs/branches"):
        response = host_client.get(f"/2.0/repositories/acme/web/{path}", headers=bearer(secret))
        assert response.status_code == 403


@pytest.mark.parametrize(
    ("bound", "scopes"),
    [({"repository": "api"}, ["webhook"]), ({"project": "WEB"}, ["project"]), ({}, ["account"])],
)
def test_user_is_the_tokens_bot(
    host_client: FlaskClient, mint: Mint, bearer: Headers, bound: dict[str, str], scopes: list[str]
) -> None:
    headers = bearer(mint(*scopes, name="Release bot", **bound))
    response = host_client.get("/2.0/user", headers=headers)
    assert response.status_code == 200
    user = response.get_json()
    assert (user["type"], user["display_name"]) == ("user", "Release bot")
    assert user["uuid"].startswith("{")
    assert host_client.get("/2.0/user", headers=headers).get_json()["uuid"] == user["uuid"]
    other = host_client.get("/2.0/user", headers=bearer(mint("webhook", repository="api")))
    assert other.get_json()["uuid"] != user["uuid"]
    for url in ("/2.0/workspaces", "/2.0/user/workspaces"):
        listed = host_client.get(url, headers=headers).get_json()["values"]
        assert len(listed) == 1
        assert listed[0].get("workspace", listed[0])["slug"] == "acme"


@pytest.mark.parametrize("url", ["/2.0/user", "/2.0/workspaces", "/2.0/user/workspaces"])
def test_identity_routes_answer_401_json_without_a_token(
    host_client: FlaskClient, url: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = host_client.get(url, headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/json"
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/2.0/user/"),
        ("GET", "/2.0/nothing"),
        ("GET", "/2.0/acme/api"),
        ("GET", "/2.0/"),
        ("GET", "/2.0"),
        ("GET", "/2.0/acme/api/pull-requests/1"),
        ("GET", "/2.0/acme/workspace/projects/API"),
        ("GET", "/2.0/acme/api.git/info/refs?service=git-upload-pack"),
        ("POST", "/2.0/user"),
        ("DELETE", "/2.0/repositories/acme/api/pullrequests"),
        ("GET", "/2.0/repositories/acme/api/pullrequests/1/merge"),
        ("GET", "/2.0/repositories/acme/api/pullrequests/x"),
    ],
)
def test_nothing_under_the_api_answers_html(
    host_client: FlaskClient,
    mint: Mint,
    bearer: Headers,
    login: Callable[[str], None],
    method: str,
    url: str,
) -> None:
    secret = mint("repository", "pullrequest", repository="api")
    for headers in ({}, bearer(secret)):
        response = host_client.open(url, method=method, headers=headers)
        assert response.mimetype == "application/json", (url, response.status_code)
        assert response.status_code in (200, 401, 403, 404, 405), response.status_code
        assert response.get_json()["type"] in ("error", "user")
    login("alice")  # a signed-in person gets the API's answers too, not pages
    response = host_client.open(url, method=method)
    assert response.mimetype == "application/json", url
