"""The second example, ``examples/saas``: a SaaS with organizations and
projects that is not a code host. Its own model and scopes through the
decorator, the JSON API, the admin pages and the CLI, the demo as it is
printed and served, and no word of Bitbucket anywhere its users look."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import bearer

from examples.saas.access import tokens
from examples.saas.app import create_app
from examples.saas.demo import create_demo_tokens
from examples.saas.demo import DemoTokens
from examples.saas.demo import PASSWORD
from examples.saas.demo import seed
from examples.saas.demo import story
from examples.saas.models import db
from flask_accesstokens import AccessTokens

ROOT = Path(__file__).resolve().parent.parent
BITBUCKET_WORDS = re.compile(r"workspace|repositor|\bgit\b|x-token-auth|\.git\b", re.I)


@pytest.fixture
def app(database_uri: str) -> Iterator[Flask]:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "SECRET_KEY": "test key",
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        seed()
        yield app
        AccessTokens.dispose_connections()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def demo(app: Flask) -> DemoTokens:
    return create_demo_tokens()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def signed_in(app: Flask, name: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"name": name, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def project_token(**resource: Any) -> str:
    return tokens.create_token(
        name="t", scopes=["items:write"], resource=resource or {"organization": 7, "project": 42}
    ).secret


# -- the decorator -------------------------------------------------------------------


def test_the_demo_story_answers_as_printed(client: FlaskClient, demo: DemoTokens) -> None:
    for step in story(demo):
        response = client.open(
            step.path, method=step.method, json=step.body, headers=bearer(step.token)
        )
        assert response.status_code == step.status, (step.explanation, response.get_json())
        assert step.explanation.startswith(str(step.status))


def test_integer_ids_bind_and_refuse_in_the_models_words(
    client: FlaskClient, demo: DemoTokens
) -> None:
    ok = client.get("/organizations/7/projects/42/items", headers=bearer(demo.project.secret))
    assert [item["title"] for item in ok.get_json()["values"]] == ["Homepage copy", "Pricing page"]
    assert ok.headers["X-Credential-Type"] == "project_access_token"
    refused = client.get("/organizations/7/projects/43/items", headers=bearer(demo.project.secret))
    assert refused.status_code == 403
    assert refused.get_json()["error"] == {
        "message": "This access token is not for this project.",
        "detail": {"reason": "wrong_resource"},
    }
    org = client.get("/organizations/8/projects/50/items", headers=bearer(demo.organization.secret))
    assert org.status_code == 403
    assert org.headers["X-Credential-Type"] == "organization_access_token"


def test_a_flat_url_is_placed_by_its_resolver(client: FlaskClient, demo: DemoTokens) -> None:
    own = client.patch("/items/2", json={"title": "Prices"}, headers=bearer(demo.project.secret))
    assert own.status_code == 200 and own.get_json()["title"] == "Prices"
    assert client.get("/items/3", headers=bearer(demo.project.secret)).status_code == 403
    # projects:admin implies items:read, and item 3 is in organization 7.
    org = bearer(demo.organization.secret)
    assert client.get("/items/3", headers=org).status_code == 200
    assert client.get("/items/4", headers=org).status_code == 403
    missing = client.get("/items/999", headers=org)
    assert missing.status_code == 403  # not a 404
    assert missing.get_json()["error"]["detail"] == {"reason": "wrong_resource"}


def test_a_missing_item_reads_like_another_projects(client: FlaskClient, demo: DemoTokens) -> None:
    """The contract: a resolver's None is answered like a resource the token
    is not bound to, and that answer is the same whether it exists or not."""
    org = bearer(demo.organization.secret)
    missing = client.get("/items/999", headers=org)
    other = client.get("/items/4", headers=org)
    assert (missing.status_code, missing.get_json()) == (other.status_code, other.get_json())


def test_a_nested_object_is_looked_up_inside_its_parent(client: FlaskClient) -> None:
    """The binding trusts the URL: organization 7's token passes on a URL
    naming organization 7 and project 50, which is organization 8's. The
    view's lookup inside the organization is what keeps project 50 out."""
    secret = tokens.create_token(
        name="o", scopes=["items:write"], resource={"organization": 7}
    ).secret
    sneaky = client.get("/organizations/7/projects/50/items", headers=bearer(secret))
    assert sneaky.status_code == 404
    assert sneaky.get_json() == {"error": "Not found."}
    posted = client.post(
        "/organizations/7/projects/50/items", json={"title": "x"}, headers=bearer(secret)
    )
    assert posted.status_code == 404


def test_bind_false_is_scope_only(client: FlaskClient, demo: DemoTokens) -> None:
    other = tokens.create_token(
        name="g", scopes=["templates:read"], resource={"organization": 8, "project": 50}
    )
    for secret in (demo.project.secret, other.secret):
        listed = client.get("/templates", headers=bearer(secret))
        assert listed.status_code == 200
        assert [t["title"] for t in listed.get_json()["values"]] == [
            "Bug report",
            "Feature request",
        ]
    refused = client.get("/templates", headers=bearer(demo.organization.secret))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["detail"] == {
        "reason": "insufficient_scope",
        "required": ["templates:read"],
        "granted": ["projects:admin"],
    }


def test_the_listing_keeps_what_the_token_reaches(client: FlaskClient, demo: DemoTokens) -> None:
    def ids(secret: str, org: int = 7) -> Any:
        response = client.get(f"/organizations/{org}/projects", headers=bearer(secret))
        return response.status_code, [
            p["id"] for p in (response.get_json() or {}).get("values", [])
        ]

    assert ids(demo.project.secret) == (200, [42])
    assert ids(demo.organization.secret) == (200, [42, 43])
    assert ids(demo.project.secret, org=8)[0] == 403


def test_deleting_a_project_revokes_its_tokens(client: FlaskClient, demo: DemoTokens) -> None:
    doomed = project_token(organization=7, project=43)
    assert client.get("/items/3", headers=bearer(doomed)).status_code == 200
    deleted = client.delete(
        "/organizations/7/projects/43", headers=bearer(demo.organization.secret)
    )
    assert deleted.get_json() == {"deleted": 43, "tokens_revoked": 1}
    assert client.get("/items/3", headers=bearer(doomed)).status_code == 401
    # The organization's and the other project's tokens live on.
    assert client.get("/items/1", headers=bearer(demo.project.secret)).status_code == 200
    # Only organization tokens may hold projects:admin.
    refused = client.delete("/organizations/7/projects/42", headers=bearer(demo.project.secret))
    assert refused.status_code == 403
    with pytest.raises(ValueError, match="a project token cannot hold 'projects:admin'"):
        tokens.create_token(
            name="x", scopes=["projects:admin"], resource={"organization": 7, "project": 42}
        )


def test_resources_that_do_not_exist_get_no_tokens(app: Flask) -> None:
    for resource in ({"organization": 9}, {"organization": 8, "project": 42}):
        with pytest.raises(ValueError, match="There is no"):
            tokens.create_token(name="x", scopes=["items:read"], resource=resource)


# -- the JSON API --------------------------------------------------------------------


def test_json_api_at_the_models_paths(app: Flask, client: FlaskClient) -> None:
    alice = signed_in(app, "alice")
    path = "/api/organizations/7/projects/42/access-tokens"
    created = alice.post(path, json={"name": "ci", "scopes": ["items:write"]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["type"] == "project"
    assert body["resource"] == {"organization": "7", "project": "42"}
    assert body["created_by"] == "alice"
    assert client.get("/items/1", headers=bearer(body["token"])).status_code == 200
    listed = alice.get(path).get_json()
    assert [t["id"] for t in listed["values"]] == [body["id"]]
    assert alice.get(f"{path}/{body['id']}").get_json()["name"] == "ci"
    assert alice.delete(f"{path}/{body['id']}").status_code == 204
    assert client.get("/items/1", headers=bearer(body["token"])).status_code == 401


def test_json_api_asks_the_manager_loader(app: Flask, client: FlaskClient) -> None:
    path = "/api/organizations/7/access-tokens"
    assert client.get(path).status_code == 403  # nobody signed in
    bob = signed_in(app, "bob")  # a member, not an admin
    refused = bob.get(path)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["message"] == (
        "You do not have permission to manage the access tokens of organization 7."
    )
    carol = signed_in(app, "carol")  # an admin of organization 8
    assert carol.get(path).status_code == 403
    assert carol.get("/api/organizations/8/access-tokens").status_code == 200
    # A token never manages tokens, whoever it belongs to.
    secret = project_token()
    alice = signed_in(app, "alice")
    assert alice.get(path, headers=bearer(secret)).status_code == 403


def test_json_api_refuses_what_does_not_exist(app: Flask) -> None:
    alice = signed_in(app, "alice")
    missing = alice.post(
        "/api/organizations/7/projects/50/access-tokens",
        json={"name": "ci", "scopes": ["items:read"]},
    )
    assert missing.status_code in (400, 404)
    assert missing.get_json()["error"]["message"] == "There is no project 7/50."
    bad = alice.post(
        "/api/organizations/7/projects/42/access-tokens",
        json={"name": "ci", "scopes": ["projects:admin"]},
    )
    assert bad.status_code == 400


# -- the admin pages -----------------------------------------------------------------


def form_id(html: str) -> str:
    found = re.search(r'name="form_id" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def test_admin_pages_create_and_reveal(app: Flask, client: FlaskClient) -> None:
    alice = signed_in(app, "alice")
    home = alice.get("/").get_data(as_text=True)
    assert "/settings/organizations/7/projects/42/access-tokens" in home
    page = alice.get("/settings/organizations/7/projects/42/access-tokens/new")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "project 42 in organization 7" in text
    assert 'value="items:write"' in text and 'value="projects:admin"' not in text
    reveal = alice.post(
        "/settings/organizations/7/projects/42/access-tokens/new",
        data={"name": "deploy", "scopes": ["items:read"], "form_id": form_id(text)},
    )
    assert reveal.status_code == 200
    secret = re.search(r"bbat_\w+", reveal.get_data(as_text=True))
    assert secret is not None
    assert client.get("/items/1", headers=bearer(secret.group(0))).status_code == 200
    listing = alice.get("/settings/organizations/7/projects/42/access-tokens")
    assert "deploy" in listing.get_data(as_text=True)
    org_page = alice.get("/settings/organizations/7/access-tokens/new").get_data(as_text=True)
    assert "works on this organization and every project in it" in org_page
    assert 'value="projects:admin"' in org_page
    assert signed_in(app, "bob").get("/settings/organizations/7/access-tokens").status_code == 403


# -- the CLI ---------------------------------------------------------------------------


def test_cli_one_option_per_level(app: Flask, client: FlaskClient) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=shlex.split(
            "access-tokens create --organization 7 --project 42 --scope items:write --name ci"
        )
    )
    assert made.exit_code == 0, made.output
    secret = re.search(r"bbat_\w+", made.output)
    assert secret is not None
    assert client.get("/items/1", headers=bearer(secret.group(0))).status_code == 200
    listed = runner.invoke(args=shlex.split("access-tokens list --organization 7 --all"))
    assert listed.exit_code == 0 and "project 42 in organization 7" in listed.output
    refused = runner.invoke(
        args=shlex.split("access-tokens create --organization 9 --scope items:read --name x")
    )
    assert refused.exit_code != 0 and "There is no organization 9." in refused.output


# -- no word of Bitbucket ----------------------------------------------------------


def test_nothing_its_users_see_mentions_bitbucket(
    app: Flask, client: FlaskClient, demo: DemoTokens
) -> None:
    seen: list[tuple[str, str]] = []
    for step in story(demo):
        response = client.open(
            step.path, method=step.method, json=step.body, headers=bearer(step.token)
        )
        seen.append((step.path, response.get_data(as_text=True)))
        seen.append((step.path, " ".join(f"{k}: {v}" for k, v in response.headers.items())))
    seen.append(("401", client.get("/items/1").get_data(as_text=True)))
    alice = signed_in(app, "alice")
    created = alice.post(
        "/settings/organizations/7/access-tokens/new",
        data={
            "name": "n",
            "scopes": ["items:read"],
            "form_id": form_id(
                alice.get("/settings/organizations/7/access-tokens/new").get_data(as_text=True)
            ),
        },
    )
    seen.append(("reveal", created.get_data(as_text=True)))
    for path in (
        "/",
        "/settings/organizations/7/access-tokens",
        "/settings/organizations/7/access-tokens/all",
        "/settings/organizations/7/access-tokens/new",
        "/settings/organizations/7/projects/42/access-tokens",
        "/settings/organizations/7/projects/42/access-tokens/new",
        "/api/organizations/7/access-tokens",
        "/api/organizations/7/projects/42/access-tokens",
    ):
        response = alice.get(path)
        assert response.status_code == 200, path
        seen.append((path, response.get_data(as_text=True)))
    seen.append(
        ("403", signed_in(app, "bob").get("/api/organizations/7/access-tokens").data.decode())
    )
    runner = app.test_cli_runner()
    commands = runner.invoke(args=["access-tokens", "--help"]).output
    seen.append(("cli", commands))
    for name in re.findall(r"^  ([a-z-]+)", commands, flags=re.MULTILINE):
        helped = runner.invoke(args=["access-tokens", name, "--help"]).output
        seen.append((f"cli {name}", helped))
    seen.append(("cli list", runner.invoke(args=shlex.split("access-tokens list --all")).output))
    assert len(seen) > 30
    found = [
        (where, m.group(0)) for where, text in seen for m in [BITBUCKET_WORDS.search(text)] if m
    ]
    assert found == []


def test_the_served_openapi_mentions_no_bitbucket_word(app: Flask) -> None:
    document = signed_in(app, "alice").get("/api/access-tokens/openapi.json")
    assert document.status_code == 200
    # Basic ``x-token-auth:<token>`` is the extension's own credential in
    # every model (the contract's), so the document names it; nothing else.
    text = document.get_data(as_text=True).replace("x-token-auth", "")
    assert BITBUCKET_WORDS.findall(text) == []


def test_cli_list_help_mentions_no_workspace(app: Flask) -> None:
    helped = app.test_cli_runner().invoke(args=["access-tokens", "list", "--help"])
    assert "--all" in helped.output
    assert not BITBUCKET_WORDS.search(helped.output)


def test_cli_without_a_level_names_the_top_levels_option(app: Flask) -> None:
    refused = app.test_cli_runner().invoke(args=["access-tokens", "list", "--all"])
    assert refused.exit_code != 0
    assert "--organization" in refused.output and "--resource" not in refused.output


# -- running it ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def saas_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'saas.sqlite'}",
        "FLASK_SECRET_KEY": "run key",
    }


def test_python_m_runs_the_demo_as_printed(tmp_path: Path) -> None:
    """``python -m examples.saas``: every printed curl line, sent to the
    server it starts, answers the status its comment announces."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.saas", "demo", "--port", str(port)],
        cwd=ROOT,
        env=saas_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if lines[-1].startswith("curl") and "/organizations/8/" in lines[-1]:
                break
        printed = "\n".join(lines)
        assert "/settings/organizations/7/projects/42/access-tokens" in printed
        assert not BITBUCKET_WORDS.search(printed)
        pairs = re.findall(r"^# (\d{3}): .*\n(curl .*)$", printed, flags=re.MULTILINE)
        assert len(pairs) == 9
        for status, line in pairs:
            assert send(shlex.split(line), port) == int(status), line
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


def send(curl: list[str], port: int) -> int:
    """The status a ``curl -i [-X M] -H ... [-d body] URL`` line gets."""
    method, headers, data = "GET", {}, None
    args = iter(curl[2:-1])
    for flag in args:
        value = next(args)
        if flag == "-X":
            method = value
        elif flag == "-H":
            key, _, header = value.partition(": ")
            headers[key] = header
        elif flag == "-d":
            data = value.encode()
    url = curl[-1]
    assert url.startswith(f"http://127.0.0.1:{port}/")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    for _ in range(50):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code)
        except urllib.error.URLError:  # the server is still starting
            import time

            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}")


def test_flask_app_cli_line(tmp_path: Path) -> None:
    """The CLI line of the docs, through ``flask --app examples.saas.app``."""
    env = saas_env(tmp_path)
    base = [sys.executable, "-m", "flask", "--app", "examples.saas.app"]
    run = subprocess.run(
        [*base, "seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    made = subprocess.run(
        [
            *base,
            *shlex.split(
                "access-tokens create --organization 7 --project 42 --scope items:write"
                " --name ci --json"
            ),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["resource"] == {"organization": "7", "project": "42"}
    assert body["type"] == "project"
