"""What a newcomer meets first on the pages: the sign-in form, the way from
an access-token page to sign in, and a repository page that shows its code."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gitwork import commit_on

Login = Callable[[str], None]
Csrf = Callable[[], str]

ADMIN_PAGES = [
    "/admin/repositories/acme/api/access-tokens",
    "/admin/repositories/acme/api/access-tokens/new",
    "/admin/workspaces/acme/projects/API/access-tokens",
    "/admin/workspaces/acme/access-tokens/all?state=active",
]


def test_sign_in_form_has_labels_above_styled_fields(host_client: FlaskClient) -> None:
    page = host_client.get("/login").text
    for field in ("username", "password"):
        assert re.search(rf'<label for="{field}">\w+</label>\s*<input id="{field}"', page)
    assert '<button type="submit" class="button">Sign in</button>' in page
    assert "demo-credentials" not in page  # not outside the demo


def test_demo_shows_its_credentials(host_app: Flask, host_client: FlaskClient) -> None:
    host_app.config["EXAMPLE_DEMO"] = True
    page = host_client.get("/login").text
    assert 'id="demo-credentials"' in page
    assert "<strong>alice</strong>" in page and "<strong>demo</strong>" in page


def test_wrong_password_keeps_the_username(host_client: FlaskClient, csrf: Csrf) -> None:
    response = host_client.post(
        "/login", data={"username": "alice", "password": "nope", "csrf_token": csrf()}
    )
    assert response.status_code == 401
    assert 'value="alice"' in response.text
    assert "Wrong username or password." in response.text


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_signed_out_admin_page_leads_to_sign_in_and_back(
    host_client: FlaskClient, csrf: Csrf, path: str
) -> None:
    response = host_client.get(path)
    assert response.status_code == 302
    target = urlsplit(response.location)
    assert target.path == "/login" and parse_qs(target.query) == {"next": [path]}
    signed_in = host_client.post(
        response.location, data={"username": "alice", "password": "demo", "csrf_token": csrf()}
    )
    assert signed_in.status_code == 302 and signed_in.location == path
    assert host_client.get(path).status_code == 200


def test_member_without_rights_still_gets_403(host_client: FlaskClient, login: Login) -> None:
    login("bob")
    assert host_client.get(ADMIN_PAGES[0]).status_code == 403


def test_repository_page_shows_branches_commits_and_the_way_back(
    host_app: Flask, host_client: FlaskClient, login: Login
) -> None:
    head = commit_on(host_app, "acme", "api", "feature", files={"f.txt": "f\n"}, message="Add f")
    login("bob")
    page = host_client.get("/acme/api").text
    branches = page[page.index('id="branches"') : page.index("</table>")]
    assert "<code>feature</code>" in branches and "<code>main</code>" in branches
    assert f"<code>{head[:7]}</code> Add f" in branches
    commits = page[page.index('id="commits"') :]
    assert commits.index("Add f") < commits.index("Initial commit")
    assert 'href="/acme/">Acme Corp</a>' in page  # back to the workspace


def test_token_list_links_back_to_settings_once(host_client: FlaskClient, login: Login) -> None:
    login("alice")
    listing = host_client.get(ADMIN_PAGES[0]).text
    assert listing.count("← Settings of") == 1
    form = host_client.get(ADMIN_PAGES[1]).text
    assert "← Settings of" not in form and form.count("←") == 1


def test_reveal_page_curl_line_runs_as_shown(host_client: FlaskClient, login: Login) -> None:
    """The reveal page's example is a whole command: with the secret in place
    of <token>, it answers with the token itself."""
    login("alice")
    form = host_client.get(ADMIN_PAGES[1]).text
    fields = dict(re.findall(r'name="(csrf_token|form_id)" value="([^"]+)"', form))
    revealed = host_client.post(
        ADMIN_PAGES[1],
        data={**fields, "name": "Shown once", "scopes": "repository"},
    ).text
    secret = re.search(r'id="token-secret"[^>]*>([^<]+)<', revealed)
    line = re.search(r'<pre class="accesstokens-code">(curl [^<]+)</pre>', revealed)
    assert secret is not None and line is not None
    command = html.unescape(line.group(1))
    assert "…" not in command
    url = command.rsplit(" ", 1)[1]
    assert command == f'curl -H "Authorization: Bearer <token>" {url}'
    answer = host_client.get(url, headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert answer.status_code == 200
    assert answer.get_json()["name"] == "Shown once"


@pytest.mark.parametrize(
    ("path", "status", "advice"),
    [
        ("/acme/api/admin", 403, "Ask a workspace admin"),
        ("/acme/nope", 404, "start again from your workspaces"),
    ],
)
def test_error_pages_keep_the_layout_and_say_what_to_do(
    host_client: FlaskClient, login: Login, path: str, status: int, advice: str
) -> None:
    login("bob")
    response = host_client.get(path)
    assert response.status_code == status
    assert "Example code host" in response.text and "Sign out" in response.text
    assert advice in response.text
    assert 'href="/">Your workspaces</a>' in response.text


def test_api_errors_stay_json(host_client: FlaskClient) -> None:
    response = host_client.get("/2.0/nothing-here")
    assert response.status_code == 404 and response.is_json


@pytest.mark.parametrize(
    ("path", "back"),
    [
        ("/acme/api/admin", "/acme/api"),
        ("/acme/workspace/projects/API/settings", "/acme/workspace/projects/API"),
        ("/acme/workspace/settings", "/acme/"),
    ],
)
def test_settings_pages_link_back(
    host_client: FlaskClient, login: Login, path: str, back: str
) -> None:
    login("alice")
    page = host_client.get(path).text
    assert f'<p class="breadcrumbs"><a href="{back}">←' in page
    assert 'class="button button-danger"' in page
