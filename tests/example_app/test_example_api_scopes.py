"""Every REST route against the scope Bitbucket requires for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"
PROJECT = "/2.0/workspaces/acme/projects/API"

#: (method, path, scope, JSON body, status on success)
ROUTES: list[tuple[str, str, str, Any, int]] = [
    ("GET", REPO, "repository", None, 200),
    ("PUT", REPO, "repository:admin", {"description": "Our API"}, 200),
    ("DELETE", REPO, "repository:delete", None, 204),
    ("POST", "/2.0/repositories/acme/new", "repository:admin", {"project": {"key": "API"}}, 201),
    ("GET", f"{REPO}/pullrequests", "pullrequest", None, 200),
    (
        "POST",
        f"{REPO}/pullrequests",
        "pullrequest:write",
        {"title": "Add X", "source": {"branch": {"name": "x"}}},
        201,
    ),
    ("GET", f"{REPO}/hooks", "webhook", None, 200),
    (
        "POST",
        f"{REPO}/hooks",
        "webhook",
        {"url": "https://ci.example/hook", "events": ["repo:push"]},
        201,
    ),
    ("GET", f"{REPO}/pipelines/", "pipeline", None, 200),
    ("POST", f"{REPO}/pipelines/", "pipeline:write", {"target": {"ref_name": "main"}}, 201),
    ("GET", f"{REPO}/pipelines_config/variables/", "pipeline:variable", None, 200),
    (
        "POST",
        f"{REPO}/pipelines_config/variables/",
        "pipeline:variable",
        {"key": "K", "value": "v"},
        201,
    ),
    ("GET", f"{REPO}/pipelines-config/runners", "runner", None, 200),
    ("POST", f"{REPO}/pipelines-config/runners", "runner:write", {"name": "r1"}, 201),
    ("GET", "/2.0/workspaces/acme", "account", None, 200),
    ("GET", "/2.0/workspaces/acme/members", "account", None, 200),
    ("GET", "/2.0/workspaces/acme/pipelines-config/runners", "runner", None, 200),
    ("POST", "/2.0/workspaces/acme/pipelines-config/runners", "runner:write", {"name": "r"}, 201),
    ("POST", "/2.0/workspaces/acme/projects", "project:admin", {"key": "NEW", "name": "N"}, 201),
    ("GET", PROJECT, "project", None, 200),
    ("PUT", PROJECT, "project:admin", {"description": "d"}, 200),
    ("DELETE", PROJECT, "project:admin", None, 204),
]

ALL_SCOPES = [
    "repository",
    "repository:write",
    "repository:admin",
    "repository:delete",
    "pullrequest",
    "pullrequest:write",
    "webhook",
    "pipeline",
    "pipeline:write",
    "pipeline:variable",
    "runner",
    "runner:write",
    "project",
    "project:admin",
    "account",
]

#: Scopes that imply the one a route needs, so they are left out of "everything else".
IMPLIES = {
    "repository": {"repository:write", "pullrequest", "pullrequest:write", "project"},
    "pullrequest": {"pullrequest:write"},
    "pipeline": {"pipeline:write", "pipeline:variable"},
    "runner": {"runner:write"},
}


def ids(route: tuple[str, str, str, Any, int]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", ROUTES, ids=ids)
def test_route_works_with_its_scope(
    host_client: FlaskClient, mint: Mint, bearer: Headers, route: tuple[str, str, str, Any, int]
) -> None:
    method, path, scope, body, status = route
    secret = mint(scope, name="ws token")  # a workspace token reaches every route
    response = host_client.open(path, method=method, json=body, headers=bearer(secret))
    assert response.status_code == status, response.text
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("route", ROUTES, ids=ids)
def test_route_refuses_every_other_scope(
    host_client: FlaskClient, mint: Mint, bearer: Headers, route: tuple[str, str, str, Any, int]
) -> None:
    method, path, scope, body, _ = route
    others = [s for s in ALL_SCOPES if s != scope and s not in IMPLIES.get(scope, set())]
    secret = mint(*others)
    response = host_client.open(path, method=method, json=body, headers=bearer(secret))
    assert response.status_code == 403
    error = response.get_json()
    assert error["type"] == "error"
    assert error["error"]["detail"]["required"] == [scope]
    assert f'scope="{scope}"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("route", ROUTES, ids=ids)
def test_route_needs_a_token(
    host_client: FlaskClient, route: tuple[str, str, str, Any, int]
) -> None:
    method, path, _, body, _ = route
    response = host_client.open(path, method=method, json=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.get_json()["type"] == "error"
