"""Responses in Bitbucket's published shapes, with every link Bitbucket gives,
and every link answering on the app."""

from __future__ import annotations

import base64
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from bitbucket_schemas import LINKS
from bitbucket_schemas import validate
from flask import Flask
from flask.testing import FlaskClient
from gitwork import commit_on

from example_app.extensions import tokens

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"
VARIABLES = f"{REPO}/pipelines_config/variables/"


@pytest.fixture
def everything(host_app: Flask, mint: Mint) -> str:
    """A workspace token holding every scope."""
    with host_app.app_context():
        scopes = [scope.name for scope in tokens.scopes.allowed_for("workspace")]
    return mint(*scopes, name="Everything")


@pytest.fixture
def populated(host_app: Flask, host_client: FlaskClient, everything: str) -> dict[str, Any]:
    """One of each object the API serves, made through the API."""
    headers = {"Authorization": f"Bearer {everything}"}
    commit_on(host_app, "acme", "api", "feature", files={"f.txt": "new\n"}, message="Add f")

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = host_client.post(f"{REPO}{path}", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return dict(response.get_json())

    return {
        "pullrequest": post(
            "/pullrequests", {"title": "Feature", "source": {"branch": {"name": "feature"}}}
        ),
        "webhook_subscription": post(
            "/hooks", {"url": "https://ci.example/hook", "events": ["repo:push"]}
        ),
        "pipeline": post("/pipelines/", {"target": {"ref_name": "main"}}),
        "pipeline_variable": post("/pipelines_config/variables/", {"key": "ENV", "value": "prod"}),
        "runner": post("/pipelines-config/runners", {"name": "r1"}),
    }


def get_json(client: FlaskClient, url: str, secret: str) -> Any:
    response = client.get(url, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, (url, response.status_code, response.text)
    assert response.mimetype == "application/json"
    return response.get_json()


# (schema of one object, URL of one, schema of the list, URL of the list)
OBJECTS = [
    ("repository", REPO, "paginated_repositories", "/2.0/repositories/acme"),
    (
        "project",
        "/2.0/workspaces/acme/projects/API",
        "paginated_projects",
        "/2.0/workspaces/acme/projects",
    ),
    ("pullrequest", f"{REPO}/pullrequests/1", "paginated_pullrequests", f"{REPO}/pullrequests"),
    ("webhook_subscription", None, "paginated_webhook_subscriptions", f"{REPO}/hooks"),
    ("pipeline", None, "paginated_pipelines", f"{REPO}/pipelines/"),
    ("pipeline_variable", None, "paginated_pipeline_variables", VARIABLES),
    ("branch", f"{REPO}/refs/branches/feature", "paginated_branches", f"{REPO}/refs/branches"),
    ("commit", None, None, f"{REPO}/commits"),
    ("user", "/2.0/user", None, None),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "url", "list_schema", "list_url"), OBJECTS)
def test_objects_and_lists_validate_against_bitbucket_schemas(
    host_client: FlaskClient,
    everything: str,
    populated: dict[str, Any],
    schema: str,
    url: str | None,
    list_schema: str | None,
    list_url: str | None,
) -> None:
    if url is not None:
        validate(schema, get_json(host_client, url, everything))
    if list_url is not None:
        page = get_json(host_client, list_url, everything)
        if list_schema is not None:
            validate(list_schema, page)
        assert page["values"], f"{list_url} listed nothing to check"
        for value in page["values"]:
            validate(schema, value)
    if schema in populated:
        validate(schema, populated[schema])


def test_pull_request_endpoints_name_their_commits(
    host_client: FlaskClient, everything: str, populated: dict[str, Any]
) -> None:
    pr = populated["pullrequest"]
    feature = get_json(host_client, f"{REPO}/refs/branches/feature", everything)
    main = get_json(host_client, f"{REPO}/refs/branches/main", everything)
    assert pr["source"]["commit"]["hash"] == feature["target"]["hash"]
    assert pr["destination"]["commit"]["hash"] == main["target"]["hash"]
    assert pr["closed_by"] is None


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("repository", REPO),
        ("pullrequest", f"{REPO}/pullrequests/1"),
        ("project", "/2.0/workspaces/acme/projects/API"),
        ("workspace", "/2.0/workspaces/acme"),
    ],
)
def test_objects_carry_every_link_bitbucket_gives(
    host_client: FlaskClient, everything: str, populated: dict[str, Any], kind: str, url: str
) -> None:
    body = get_json(host_client, url, everything)
    assert body["type"] == kind
    assert set(body["links"]) >= LINKS[kind]
    for name, link in body["links"].items():
        for entry in link if name == "clone" else [link]:
            assert entry["href"].startswith("http://localhost/"), (name, entry)


def test_workspace_listings_are_the_ones_its_links_name(
    host_client: FlaskClient, everything: str
) -> None:
    links = get_json(host_client, "/2.0/workspaces/acme", everything)["links"]
    assert links["projects"]["href"] == "http://localhost/2.0/workspaces/acme/projects"
    assert links["repositories"]["href"] == "http://localhost/2.0/repositories/acme"
    assert links["members"]["href"] == "http://localhost/2.0/workspaces/acme/members"
    owners = get_json(host_client, links["owners"]["href"], everything)["values"]
    assert [m["user"]["nickname"] for m in owners] == ["alice"]


def links_of(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for name, link in body["links"].items():
        for entry in link if isinstance(link, list) else [link]:
            yield name, entry["href"]


#: Actions Bitbucket takes by POST only: a GET of their link is a 405, as there.
POST_ONLY = {"approve", "merge", "decline"}


@pytest.mark.parametrize(
    "url",
    [
        REPO,
        f"{REPO}/pullrequests/1",
        "/2.0/workspaces/acme/projects/API",
        "/2.0/workspaces/acme",
        "/2.0/user",
        f"{REPO}/refs/branches/main",
    ],
)
def test_every_link_resolves(
    host_client: FlaskClient,
    everything: str,
    populated: dict[str, Any],
    login: Callable[[str], None],
    url: str,
) -> None:
    body = get_json(host_client, url, everything)
    token = {"Authorization": f"Bearer {everything}"}
    for name, href in links_of(body):
        if name == "html":
            continue  # pages for people: checked below, signed in
        if name == "clone":
            basic = base64.b64encode(f"x-token-auth:{everything}".encode()).decode()
            response = host_client.get(
                f"{href}/info/refs?service=git-upload-pack",
                headers={"Authorization": f"Basic {basic}"},
            )
            assert response.status_code == 200, href
            continue
        response = host_client.get(href, headers=token)
        if name in POST_ONLY:
            assert response.status_code == 405, href
            assert "POST" in response.headers["Allow"]
            assert response.get_json()["type"] == "error"
            continue
        assert response.status_code == 200, (name, href, response.status_code, response.text)
        assert response.mimetype in ("application/json", "image/svg+xml", "text/plain"), href
    login("alice")
    for name, href in links_of(body):
        if name == "html":
            response = host_client.get(href)
            assert response.status_code == 200, href
            assert response.mimetype == "text/html"
