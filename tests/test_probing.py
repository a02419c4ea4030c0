"""Cross-resource probing: a token, or a manager of one resource, learns
nothing about other resources, not even whether they exist.

A repository's existence is private in a Bitbucket-like app. A token bound
to one repository that gets a different answer (status, a header, a byte of
the body) for an existing repository than for a missing one can map the
workspace. So the answers are compared byte for byte.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask import request
from helpers import basic
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens.serialize import token_json
from flask_accesstokens.state import app_state

#: Everything a repository token may hold, so binding (not scope) decides.
REPOSITORY_SCOPES = ["repository:write", "repository:admin", "repository:delete",
                     "pullrequest:write", "webhook", "pipeline:write", "pipeline:variable",
                     "runner:write"]  # fmt: skip

#: Every route shape of ``make_app`` that names a resource, filled in for an
#: existing resource the token is not bound to, and for a missing one.
#: (method, existing, missing)
REPOSITORY_PROBES = [
    ("GET", "/repositories/acme/lib", "/repositories/acme/nope"),
    ("GET", "/repositories/hobby/notes", "/repositories/nope/nope"),
    ("GET", "/repositories/hobby/notes", "/repositories/hobby/nope"),
    ("POST", "/repositories/acme/lib/push", "/repositories/acme/nope/push"),
    ("POST", "/repositories/acme/web/pullrequests", "/repositories/acme/nope/pullrequests"),
    ("GET", "/repositories/acme/lib/either", "/repositories/acme/nope/either"),
    ("GET", "/workspaces/acme/projects/WEB", "/workspaces/acme/projects/NOPE"),
    ("GET", "/workspaces/hobby/projects/HOB", "/workspaces/nope/projects/HOB"),
    ("GET", "/workspaces/acme/projects/API/repos/lib", "/workspaces/acme/projects/API/repos/nope"),
    ("GET", "/workspaces/acme/projects/WEB/repos/web", "/workspaces/acme/projects/NOPE/repos/nope"),
    ("GET", "/workspaces/hobby/members", "/workspaces/nope/members"),
    ("GET", "/workspaces/acme/repos", "/workspaces/nope/repos"),
    ("GET", "/optional/acme/lib", "/optional/acme/nope"),
]

#: For a project token on acme/API: repositories outside its project, which
#: ``project_loader`` knows (another project) or does not (None).
PROJECT_PROBES = [
    ("GET", "/repositories/acme/web", "/repositories/acme/nope"),
    ("GET", "/repositories/hobby/notes", "/repositories/nope/nope"),
    ("POST", "/repositories/acme/web/push", "/repositories/acme/nope/push"),
    ("GET", "/repositories/acme/web/either", "/repositories/acme/nope/either"),
    ("GET", "/workspaces/acme/projects/WEB", "/workspaces/acme/projects/NOPE"),
    ("GET", "/workspaces/acme/projects/WEB/repos/web", "/workspaces/acme/projects/WEB/repos/nope"),
    # Claims the token's own project for a repository that is not in it.
    ("GET", "/workspaces/acme/projects/API/repos/web", "/workspaces/acme/projects/API/repos/nope"),
    ("GET", "/workspaces/hobby/members", "/workspaces/nope/members"),
    ("GET", "/optional/acme/web", "/optional/acme/nope"),
]

WORKSPACE_PROBES = [
    ("GET", "/repositories/hobby/notes", "/repositories/nope/notes"),
    ("GET", "/workspaces/hobby/projects/HOB", "/workspaces/nope/projects/HOB"),
    ("GET", "/workspaces/hobby/members", "/workspaces/nope/members"),
    ("GET", "/workspaces/hobby/projects/HOB/repos/notes", "/workspaces/nope/projects/X/repos/y"),
]


def answer(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything a client sees, except the clock."""
    headers = sorted((k, v) for k, v in response.headers.items() if k.lower() != "date")
    return response.status_code, headers, response.get_data()


def probe(client: Any, method: str, path: str, headers: dict[str, str]) -> Any:
    return answer(client.open(path, method=method, headers=headers))


@pytest.fixture
def existing_resources(app: Flask) -> Any:
    """The test app's loader knows acme/lib etc.; make sure ``nope`` is
    really missing, so the comparison means something."""
    projects = app.config["TEST_PROJECTS"]
    assert ("acme", "nope") not in projects and ("acme", "lib") in projects
    return projects


def check_probes(client: Any, probes: list[tuple[str, str, str]], secret: str) -> None:
    for credentials in (bearer(secret), basic(secret)):
        for method, existing, missing in probes:
            seen = probe(client, method, existing, credentials)
            assert seen[0] == 403, (existing, seen)
            assert seen == probe(client, method, missing, credentials), (existing, missing)
            # Asking twice changes nothing (last-used bookkeeping, caches).
            assert seen == probe(client, method, existing, credentials)


@pytest.mark.parametrize(
    "scopes", [REPOSITORY_SCOPES, ["repository"]], ids=["all-scopes", "read-only"]
)
def test_repository_token(
    client: Any, tokens: AccessTokens, existing_resources: Any, scopes: list[str]
) -> None:
    new = tokens.create_token(name="CI", workspace="acme", repository="api", scopes=scopes)
    # The token works where it is bound: the probes are not all refused for
    # some other reason.
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200
    check_probes(client, REPOSITORY_PROBES, new.secret)


def test_project_token(client: Any, tokens: AccessTokens, existing_resources: Any) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", project="API", scopes=["project", *REPOSITORY_SCOPES]
    )
    assert client.get("/repositories/acme/lib", headers=bearer(new.secret)).status_code == 200
    check_probes(client, PROJECT_PROBES, new.secret)


def test_project_token_asks_the_loader_and_it_says_none(
    client: Any, tokens: AccessTokens, app: Flask
) -> None:
    """A missing repository is one the loader answers None for: same answer
    as a repository in another project, and as a repository that has just
    been deleted."""
    new = tokens.create_token(name="CI", workspace="acme", project="API", scopes=["repository"])
    headers = bearer(new.secret)
    assert client.get("/repositories/acme/lib", headers=headers).status_code == 200
    elsewhere = probe(client, "GET", "/repositories/acme/web", headers)
    app.config["TEST_PROJECTS"].pop(("acme", "lib"))
    assert probe(client, "GET", "/repositories/acme/lib", headers) == elsewhere


def test_workspace_token(client: Any, tokens: AccessTokens, existing_resources: Any) -> None:
    new = tokens.create_token(
        name="CI", workspace="acme", scopes=["project", "account", *REPOSITORY_SCOPES]
    )
    assert client.get("/workspaces/acme/members", headers=bearer(new.secret)).status_code == 200
    check_probes(client, WORKSPACE_PROBES, new.secret)


# -- the management API ---------------------------------------------------------------

ALICE = {"X-Test-User": "alice"}  # manages acme
BOB = {"X-Test-User": "bob"}  # manages hobby only
REPO = "/api/repositories/acme/api/access-tokens"


@pytest.fixture
def managed(database_uri: str) -> Iterator[tuple[Flask, AccessTokens]]:
    app, db, tokens = make_app(database_uri)

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = request.headers.get("X-Test-User")
        admins = {"alice": {"acme"}, "bob": {"hobby"}}
        return user if resource.workspace in admins.get(user or "", ()) else None

    with app.app_context():
        yield app, tokens
        db.session.remove()
        tokens.dispose_connections()
        db.engine.dispose()


RESOURCES = {
    "repository": ("/api/repositories/acme/api", {"repository": "api"}),
    "sibling": ("/api/repositories/acme/lib", {"repository": "lib"}),
    "project": ("/api/workspaces/acme/projects/API", {"project": "API"}),
    "workspace": ("/api/workspaces/acme", {}),
}


@pytest.fixture
def everywhere(managed: tuple[Flask, AccessTokens]) -> dict[str, set[str]]:
    """Three tokens on each resource of acme (one revoked), all named alike,
    and one in hobby: ids by resource."""
    app, tokens = managed
    ids: dict[str, set[str]] = {}
    for key, (_, kwargs) in RESOURCES.items():
        scopes = ["project"] if key in ("project", "workspace") else ["repository"]
        made = [
            tokens.create_token(name=f"deploy {i}", workspace="acme", scopes=scopes, **kwargs)
            for i in range(3)
        ]
        tokens.revoke_token(made[0].token.id)
        ids[key] = {new.token.id for new in made}
    ids["hobby"] = {
        tokens.create_token(
            name="deploy 0", workspace="hobby", repository="notes", scopes=["repository"]
        ).token.id
    }
    return ids


def test_lists_hold_only_that_exact_resource(
    managed: tuple[Flask, AccessTokens], everywhere: dict[str, set[str]]
) -> None:
    """A repository inside a project, in a workspace, lists neither the
    project's nor the workspace's tokens, nor its siblings'; and the other way
    round. Filters and counts don't see past the resource either."""
    app, _ = managed
    client = app.test_client()
    for key, (prefix, _) in RESOURCES.items():
        for query in ("", "?q=deploy", "?state=revoked", "?state=active", "?pagelen=100",
                      "?never_used=true", "?last_used_before=2999-01-01T00:00:00Z"):  # fmt: skip
            response = client.get(f"{prefix}/access-tokens{query}", headers=ALICE)
            assert response.status_code == 200
            page = response.get_json()
            listed = {token["id"] for token in page["values"]}
            assert listed <= everywhere[key], (key, query)
            assert page["size"] == len(listed)
            if query in ("", "?q=deploy"):
                assert listed == everywhere[key]


def test_another_resources_token_is_not_found(
    managed: tuple[Flask, AccessTokens], everywhere: dict[str, set[str]]
) -> None:
    """An id of a token of another resource (a sibling repository, the
    project holding the repository, the workspace, another workspace) gets
    exactly the answer of an id that never existed, and nothing changes."""
    app, tokens = managed
    client = app.test_client()
    foreign = sorted(
        everywhere["sibling"]
        | everywhere["project"]
        | everywhere["workspace"]
        | everywhere["hobby"]
    )
    never = [secrets.token_hex(16), "0" * 32, "not-an-id"]
    before = snapshot(tokens, foreign)
    for method, suffix, body in (("GET", "", None), ("DELETE", "", None),
                                 ("POST", "/rotate", {})):  # fmt: skip

        def ask(token_id: str, method: str = method, suffix: str = suffix, body: Any = body) -> Any:
            return answer(
                client.open(f"{REPO}/{token_id}{suffix}", method=method, headers=ALICE, json=body)
            )

        missing = ask(never[0])
        assert missing[0] == 404
        for token_id in [*foreign, *never[1:]]:
            assert ask(token_id) == missing, (method, token_id)
    assert snapshot(tokens, foreign) == before  # nothing revoked or rotated


def snapshot(tokens: AccessTokens, ids: list[str]) -> list[dict[str, Any]]:
    session = app_state().db.session
    session.expire_all()
    return [token_json(session.get(AccessToken, i)) for i in ids]


def test_a_manager_of_another_workspace_learns_nothing(
    managed: tuple[Flask, AccessTokens], everywhere: dict[str, set[str]]
) -> None:
    """bob manages hobby only: acme's token ids and random ids get the same
    403, on every route, before any token is looked up."""
    app, _ = managed
    client = app.test_client()
    real = sorted(everywhere["repository"])[0]
    for method, suffix, body in (("GET", "", None), ("DELETE", "", None),
                                 ("POST", "/rotate", {})):  # fmt: skip
        seen = answer(client.open(f"{REPO}/{real}{suffix}", method=method, headers=BOB, json=body))
        assert seen[0] == 403
        other = client.open(
            f"{REPO}/{secrets.token_hex(16)}{suffix}", method=method, headers=BOB, json=body
        )
        assert answer(other) == seen
    listed = client.get(REPO, headers=BOB)
    assert listed.status_code == 403 and b"deploy" not in listed.data
