"""Odd query strings on the API's lists: a 400 or a page, never a 500, and
never a link built from what the client sent in place of the route."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from gitwork import commit_on

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"

#: Every kind of list: from the database, from git, filtered by the token, and empty.
LISTS = [
    "/2.0/repositories/acme",
    "/2.0/workspaces/acme/projects",
    "/2.0/workspaces/acme/members",
    f"{REPO}/pullrequests",
    f"{REPO}/hooks",
    f"{REPO}/pipelines/",
    f"{REPO}/pipelines_config/variables/",
    f"{REPO}/pipelines-config/runners",
    f"{REPO}/refs/branches",
    f"{REPO}/commits",
    f"{REPO}/forks",
    "/2.0/workspaces",
]

BAD_NUMBERS = ["²", "-1", "0", "1e3", "1.5", "0x10", " 1", "1 ", "", "9" * 40, "١", "+1"]


@pytest.fixture
def headers(mint: Mint, bearer: Headers) -> dict[str, str]:
    return bearer(
        mint("account", "project", "pullrequest", "webhook", "pipeline:variable", "runner")
    )


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("name", ["page", "pagelen"])
def test_bad_page_numbers_are_400(
    host_client: FlaskClient, headers: dict[str, str], url: str, name: str
) -> None:
    for value in BAD_NUMBERS:
        response = host_client.get(url, query_string={name: value}, headers=headers)
        assert response.status_code == 400, (url, name, value, response.status_code)
        assert response.get_json()["error"]["message"].startswith(name)


@pytest.mark.parametrize("url", LISTS)
def test_odd_but_valid_numbers_give_a_page(
    host_client: FlaskClient, headers: dict[str, str], url: str
) -> None:
    for query in ("page=999999999", "pagelen=999999999", "page=007", "page=1&page=x", "pagelen=1"):
        response = host_client.get(f"{url}?{query}", headers=headers)
        assert response.status_code == 200, (url, query, response.text)
        body = response.get_json()
        assert body["pagelen"] <= 100
    beyond = host_client.get(f"{url}?page=999999999", headers=headers).get_json()
    assert beyond["values"] == [] and "next" not in beyond


@pytest.mark.parametrize("url", LISTS)
def test_url_building_names_in_the_query_are_plain_parameters(
    host_client: FlaskClient, headers: dict[str, str], url: str
) -> None:
    for query in ("_external=0", "_method=POST", "_anchor=x", "_scheme=javascript", "endpoint=x"):
        response = host_client.get(f"{url}?{query}", headers=headers)
        assert response.status_code == 200, (url, query, response.status_code)


def next_of(client: FlaskClient, url: str, headers: dict[str, str]) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.get_json()["next"])


@pytest.mark.parametrize(
    "query",
    [
        "workspace=hobby&repo_slug=notes",
        "workspace=hobby&workspace=other",
        "_anchor=evil",
        "_external=0",
        "_scheme=javascript",
        "_method=POST",
        "repo_slug=notes&_anchor=x&page=1",
    ],
)
def test_next_link_keeps_the_route_and_the_query(
    host_app: Flask, host_client: FlaskClient, mint: Mint, bearer: Headers, query: str
) -> None:
    for i in range(2):
        commit_on(host_app, "acme", "api", "main", files={f"n{i}": "n\n"}, message=f"n{i}")
    headers = bearer(mint("repository", "webhook"))
    for path in (f"{REPO}/commits", "/2.0/repositories/acme", f"{REPO}/refs/branches"):
        if path.endswith("branches"):
            commit_on(host_app, "acme", "api", "other", files={"o": "o\n"}, message="o")
        link = next_of(host_client, f"{path}?pagelen=1&{query}", headers)
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost", path)
        assert parts.fragment == ""
        sent = parse_qs(query, keep_blank_values=True)
        kept = parse_qs(parts.query, keep_blank_values=True)
        assert kept.pop("page") == ["2"] and kept.pop("pagelen") == ["1"]
        sent.pop("page", None)
        assert kept == sent  # the client's other parameters travel on, as sent
        follow = host_client.get(link, headers=headers)
        assert follow.status_code == 200
