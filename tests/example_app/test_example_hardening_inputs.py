"""The example app's classes of issue 21: ``self`` shows only the job's
fields; bad input (non-UTF-8 query strings, deeply nested JSON, huge bodies)
is a 4xx, never a 500; git's 403 is not stored; actors fit their columns;
failed sign-ins are throttled per address and per username."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import git_http
from example_app import inputs
from example_app.extensions import db
from example_app.models import PullRequest

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]
Login = Callable[[str], None]
Csrf = Callable[[], str]

MiB = 1024 * 1024
REFS = "/acme/api.git/info/refs"
#: Every scope a workspace token may hold: it reaches every 2.0 route of acme.
EVERYTHING = (
    "repository:write",
    "repository:admin",
    "repository:delete",
    "pullrequest:write",
    "webhook",
    "pipeline:write",
    "pipeline:variable",
    "runner:write",
    "project",
    "project:admin",
    "account",
)
#: Values for the URL variables of the 2.0 routes, on the seeded data.
ROUTE_VALUES = {
    "workspace": "acme",
    "repo_slug": "api",
    "project_key": "API",
    # the extension's management routes name the levels themselves
    "repository": "api",
    "project": "API",
    "policy_id": "0" * 32,
    "original": "svc/acme/api",
    "pull_request_id": "1",
    "token_id": "0" * 32,
    "provider": "github",
    "uid": "{00000000-0000-0000-0000-000000000000}",
}


def write_routes(app: Flask) -> list[str]:
    """Every 2.0 route that takes a body, with the seeded names filled in."""
    paths = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/2.0/") or not rule.methods & {"POST", "PUT", "PATCH"}:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: ROUTE_VALUES[m.group(1)], rule.rule)
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH"}):
            paths.append(f"{method} {path}")
    return sorted(set(paths))


# -- 1. self ---------------------------------------------------------------------------


def test_self_answers_the_jobs_fields_only(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint("repository", repository="api")
    response = host_client.get(
        "/2.0/access-tokens/self",
        headers={**bearer(secret), "User-Agent": "ci-runner/1.2 (build-host-7.corp.internal)"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) - {"resource"} == {
        "id",
        "name",
        "type",
        "workspace",
        "project",
        "repository",
        "scopes",
        "granted",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    }
    for hidden in ("alice", "10.1.2.3", "build-host-7"):
        assert hidden not in response.text


# -- 2. query strings that are not UTF-8 ---------------------------------------------------


UNDECODABLE = [
    ("GET", "/login", "next=\xff", None),
    ("POST", "/login", "next=\xff", None),
    ("GET", "/", "x=\xff", None),
    ("GET", "/acme/", "x=\xff", None),
    ("GET", "/acme/api", "\xff", None),
    ("GET", "/acme/workspace/settings", "tab=\xfe\xff", None),
    ("GET", "/acme/workspace/notifications", "page=\xc3", None),
    ("GET", "/acme/api.git/info/refs", "service=\xff", None),
    ("GET", "/acme/api.git/info/refs", "service=git-upload-pack&\xff", None),
    ("GET", "/2.0/repositories/acme", "q=\xff", None),
    ("GET", "/2.0/workspaces/acme/members", "q=\xff", None),
    ("GET", "/2.0/repositories/acme/api/pullrequests", "state=\xff", None),
    ("GET", "/2.0/repositories/acme/api/refs/branches", "q=\xff", None),
    ("GET", "/2.0/workspaces", "role=\xff", None),
    ("GET", "/2.0/repositories/acme/api/access-tokens", "page=\xff", None),
    ("GET", "/admin/repositories/acme/api/access-tokens", "page=\xff", None),
]


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "alice"])
@pytest.mark.parametrize(("method", "path", "raw", "_"), UNDECODABLE)
def test_a_query_string_that_is_not_utf8_is_a_400(
    host_client: FlaskClient,
    login: Login,
    signed_in: bool,
    method: str,
    path: str,
    raw: str,
    _: Any,
) -> None:
    if signed_in:
        login("alice")
    response = host_client.open(path, method=method, environ_overrides={"QUERY_STRING": raw})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("path", ["/2.0/repositories/acme", "/2.0/workspaces/acme/members"])
def test_a_token_listing_with_a_bad_query_is_a_json_400(
    host_client: FlaskClient, mint: Mint, bearer: Headers, path: str
) -> None:
    secret = mint(*EVERYTHING)
    response = host_client.get(
        path, headers=bearer(secret), environ_overrides={"QUERY_STRING": "q=\xff"}
    )
    assert response.status_code == 400
    assert response.is_json and response.get_json()["type"] == "error"


def test_percent_encoded_bytes_are_not_raw_bytes(host_client: FlaskClient) -> None:
    """``%FF`` decodes (to U+FFFD): only raw bytes are refused."""
    assert host_client.get("/login?next=%ff").status_code == 200


# -- 3. deeply nested JSON and 4. bounded bodies ----------------------------------------------


def test_every_write_route_is_known(host_app: Flask) -> None:
    routes = write_routes(host_app)
    assert "POST /2.0/repositories/acme/api/pullrequests" in routes
    assert "PUT /2.0/repositories/acme/api" in routes
    assert len(routes) >= 20


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_400_on_every_write_route(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers, depth: int
) -> None:
    secret = mint(*EVERYTHING)
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        for route in write_routes(host_app):
            method, path = route.split(" ", 1)
            response = host_client.open(
                path,
                method=method,
                data=nested,
                headers={**bearer(secret), "Content-Type": "application/json"},
            )
            assert response.status_code < 500, route
            # 413: public revocation's own, smaller bound; 403: tokens may not
            # manage tokens, refused before the body is read; 401: introspection
            # wants its client's credentials, not a token, before the body.
            assert response.status_code in (400, 401, 403, 404, 413), (
                route,
                response.status_code,
            )


@pytest.mark.parametrize(
    "route",
    [
        "POST /2.0/repositories/acme/newrepo",
        "PUT /2.0/repositories/acme/api",
        "POST /2.0/repositories/acme/api/pullrequests",
        "POST /2.0/repositories/acme/api/hooks",
        "POST /2.0/repositories/acme/api/pipelines_config/variables/",
        "POST /2.0/workspaces/acme/projects",
    ],
)
def test_deep_nesting_is_answered_as_bad_json(
    host_client: FlaskClient, mint: Mint, bearer: Headers, route: str
) -> None:
    secret = mint(*EVERYTHING)
    method, path = route.split(" ", 1)
    response = host_client.open(
        path,
        method=method,
        data="[" * 100_000 + "]" * 100_000,
        headers={**bearer(secret), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["type"] == "error"


@pytest.mark.parametrize(
    "route",
    [
        "POST /2.0/repositories/acme/newrepo",
        "PUT /2.0/repositories/acme/api",
        "POST /2.0/repositories/acme/api/pullrequests",
        "PUT /2.0/workspaces/acme/projects/API",
        "POST /2.0/repositories/acme/api/hooks",
    ],
)
@pytest.mark.parametrize("size", [inputs.MAX_BODY + 1, 30 * MiB])
def test_json_bodies_are_bounded(
    host_client: FlaskClient, mint: Mint, bearer: Headers, route: str, size: int
) -> None:
    secret = mint(*EVERYTHING)
    method, path = route.split(" ", 1)
    padding = "x" * (size - len('{"description": ""}'))
    response = host_client.open(
        path,
        method=method,
        data=f'{{"description": "{padding}"}}',
        headers={**bearer(secret), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.is_json


def test_a_chunked_json_body_is_bounded_too(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint(*EVERYTHING)
    body = b'{"description": "' + b"x" * (2 * MiB) + b'"}'
    response = host_client.put(
        "/2.0/repositories/acme/api",
        headers={**bearer(secret), "Content-Type": "application/json"},
        environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_a_body_under_the_bound_is_read(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    secret = mint(*EVERYTHING)
    response = host_client.put(
        "/2.0/repositories/acme/api",
        json={"description": "d" * 200},
        headers=bearer(secret),
    )
    assert response.status_code == 200


def test_git_keeps_its_own_larger_limit(
    host_client: FlaskClient, mint: Mint, basic: Headers
) -> None:
    secret = mint("repository", repository="api")
    body = b"0" * (inputs.MAX_BODY * 2)
    assert git_http.GIT_MAX_FETCH_REQUEST > len(body)
    for environ in (
        {"CONTENT_LENGTH": str(len(body))},
        {"wsgi.input_terminated": True},
    ):
        response = host_client.post(
            "/acme/api.git/git-upload-pack",
            headers={**basic(secret), "Content-Type": "application/x-git-upload-pack-request"},
            environ_overrides={"wsgi.input": io.BytesIO(body), **environ},
        )
        assert response.status_code != 413


# -- 5. git's 403 is not stored -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "bound", "path"),
    [
        (("pipeline",), {"repository": "api"}, f"{REFS}?service=git-upload-pack"),
        (("repository",), {"repository": "web"}, f"{REFS}?service=git-upload-pack"),
        (("repository",), {"repository": "api"}, f"{REFS}?service=git-receive-pack"),
    ],
    ids=["scope", "binding", "push-with-read"],
)
def test_git_403_is_not_stored(
    host_client: FlaskClient, mint: Mint, basic: Headers, scopes: Any, bound: Any, path: str
) -> None:
    secret = mint(*scopes, **bound)
    response = host_client.get(path, headers=basic(secret))
    assert response.status_code == 403
    assert response.headers["Cache-Control"] == "no-store"


# -- 6. actors fit their columns -------------------------------------------------------------


def test_a_long_named_token_writes_actors_that_fit(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    name = "n" * 255
    secret = mint("pullrequest:write", repository="api", name=name)
    created = host_client.post(
        "/2.0/repositories/acme/api/pullrequests",
        json={"title": "t", "source": {"branch": {"name": "main"}}},
        headers=bearer(secret),
    )
    assert created.status_code == 201, created.text
    with host_app.app_context():
        pr = db.session.get(PullRequest, created.get_json()["id"])
        assert pr is not None
        assert len(pr.author) <= 255 and pr.author.endswith(" (access token)")
    assert host_client.delete("/2.0/access-tokens/self", headers=bearer(secret)).status_code == 204
    assert host_client.get("/2.0/user", headers=bearer(secret)).status_code == 401


# -- 7. sign-in throttling -------------------------------------------------------------------


def sign_in(
    client: FlaskClient, csrf: Csrf, username: str, password: str, address: str = "192.0.2.1"
) -> Any:
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf()},
        environ_base={"REMOTE_ADDR": address},
    )


def test_failures_from_one_address_are_throttled(host_client: FlaskClient, csrf: Csrf) -> None:
    statuses = [sign_in(host_client, csrf, "alice", f"wrong{n}").status_code for n in range(5)]
    assert statuses == [401] * 5
    refused = sign_in(host_client, csrf, "bob", "nope")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Too many failed sign-ins" in refused.text
    # Even the right password is refused from that address while it waits...
    assert sign_in(host_client, csrf, "bob", "demo").status_code == 429
    # ...but not from another one.
    assert sign_in(host_client, csrf, "bob", "demo", "192.0.2.2").status_code == 302


@pytest.mark.parametrize(
    "addresses",
    [
        [f"2001:db8:7:7::{n + 1}" for n in range(6)],
        ["198.51.100.5", "::ffff:198.51.100.5"] * 3,
    ],
    ids=["one-ipv6-64", "mapped-ipv4"],
)
def test_an_address_is_counted_as_the_extension_counts_clients(
    host_client: FlaskClient, csrf: Csrf, addresses: list[str]
) -> None:
    statuses = [
        sign_in(host_client, csrf, "alice", "wrong", address).status_code for address in addresses
    ]
    assert statuses == [401] * 5 + [429]


@pytest.mark.parametrize("spelling", ["alice", "ALICE", "Alice"])
def test_failures_on_one_username_from_many_addresses_are_throttled(
    host_client: FlaskClient, csrf: Csrf, spelling: str
) -> None:
    for n in range(10):
        assert sign_in(host_client, csrf, spelling, "wrong", f"203.0.113.{n}").status_code == 401
    refused = sign_in(host_client, csrf, "alice", "demo", "203.0.113.200")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) <= 60  # a lock-out stays short
    # Other accounts are not affected.
    assert sign_in(host_client, csrf, "bob", "demo", "203.0.113.201").status_code == 302


def test_one_address_alone_cannot_lock_someone_out(host_client: FlaskClient, csrf: Csrf) -> None:
    for _ in range(12):
        sign_in(host_client, csrf, "bob", "wrong", "198.51.100.66")
    assert sign_in(host_client, csrf, "bob", "demo", "198.51.100.67").status_code == 302


def test_unknown_usernames_are_throttled_alike(host_client: FlaskClient, csrf: Csrf) -> None:
    """No enumeration: a name that does not exist has a budget too."""
    for name in ("alice", "nobody-here"):
        statuses = [
            sign_in(host_client, csrf, name, "wrong", f"192.0.2.{10 * n + len(name)}").status_code
            for n in range(11)
        ]
        assert statuses == [401] * 10 + [429], name


def test_successes_do_not_count(host_client: FlaskClient, csrf: Csrf) -> None:
    for _ in range(8):
        assert sign_in(host_client, csrf, "alice", "demo").status_code == 302
        host_client.post("/logout", data={"csrf_token": csrf()})
    assert sign_in(host_client, csrf, "alice", "wrong").status_code == 401


def test_bounds_are_configurable(host_app: Flask, host_client: FlaskClient, csrf: Csrf) -> None:
    from example_app import signin

    host_app.config["SIGNIN_LIMIT_PER_ADDRESS"] = "2/minute"
    signin.init_app(host_app)
    statuses = [sign_in(host_client, csrf, "alice", "wrong").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


@pytest.mark.parametrize(("size", "refused"), [(1000, False), (1001, True)])
def test_a_chunked_git_body_at_its_own_bound_is_read(
    host_app: Flask, host_client: FlaskClient, mint: Mint, basic: Headers, size: int, refused: bool
) -> None:
    host_app.config["GIT_MAX_FETCH_REQUEST"] = 1000
    secret = mint("repository", repository="api")
    response = host_client.post(
        "/acme/api.git/git-upload-pack",
        headers={**basic(secret), "Content-Type": "application/x-git-upload-pack-request"},
        environ_overrides={"wsgi.input": io.BytesIO(b"0" * size), "wsgi.input_terminated": True},
    )
    assert (response.status_code == 413) is refused
