"""Pull requests: created and merged by tokens, which show as their author."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

PRS = "/2.0/repositories/acme/api/pullrequests"


def open_pr(client: FlaskClient, headers: dict[str, str], title: str = "Add feature") -> int:
    response = client.post(
        PRS,
        json={
            "title": title,
            "description": "Please review",
            "source": {"branch": {"name": "feature"}},
            "destination": {"branch": {"name": "main"}},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return int(response.get_json()["id"])


def test_token_is_the_author(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pullrequest:write", repository="api", name="Release bot"))
    number = open_pr(host_client, headers)
    body = host_client.get(f"{PRS}/{number}", headers=headers).get_json()
    assert body["type"] == "pullrequest"
    assert body["id"] == 1
    assert body["author"] == {"type": "user", "display_name": "Release bot (access token)"}
    assert body["state"] == "OPEN"
    assert body["source"]["branch"]["name"] == "feature"
    assert body["destination"]["repository"]["full_name"] == "acme/api"
    assert body["links"]["self"]["href"] == f"http://localhost{PRS}/1"


def test_list_is_paginated_newest_first(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    headers = bearer(mint("pullrequest:write", repository="api"))
    for n in range(3):
        open_pr(host_client, headers, title=f"PR {n}")
    page = host_client.get(f"{PRS}?pagelen=2", headers=headers).get_json()
    assert [pr["title"] for pr in page["values"]] == ["PR 2", "PR 1"]
    assert (page["page"], page["pagelen"], page["size"]) == (1, 2, 3)
    assert page["next"].startswith("http://localhost/2.0/repositories/acme/api/pullrequests?")
    last = host_client.get(page["next"], headers=headers).get_json()
    assert [pr["title"] for pr in last["values"]] == ["PR 0"]
    assert "next" not in last


def test_bad_pagination_is_400(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pullrequest", repository="api"))
    for query in ("page=0", "page=x", "pagelen=-1"):
        response = host_client.get(f"{PRS}?{query}", headers=headers)
        assert response.status_code == 400
        assert response.get_json()["type"] == "error"


def test_merge(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pullrequest:write", repository="api", name="Merger"))
    number = open_pr(host_client, headers)
    merged = host_client.post(f"{PRS}/{number}/merge", headers=headers)
    assert merged.status_code == 200
    assert merged.get_json()["state"] == "MERGED"
    assert merged.get_json()["closed_by"]["display_name"] == "Merger (access token)"
    assert host_client.post(f"{PRS}/{number}/merge", headers=headers).status_code == 400
    assert host_client.get(PRS, headers=headers).get_json()["size"] == 0
    assert host_client.get(f"{PRS}?state=MERGED", headers=headers).get_json()["size"] == 1


def test_merge_needs_write(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    number = open_pr(host_client, bearer(mint("pullrequest:write", repository="api", name="w")))
    reader = bearer(mint("pullrequest", repository="api", name="r"))
    assert host_client.post(f"{PRS}/{number}/merge", headers=reader).status_code == 403


def test_missing_pull_request_is_404(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pullrequest:write", repository="api"))
    assert host_client.get(f"{PRS}/9", headers=headers).status_code == 404
    assert host_client.post(f"{PRS}/9/merge", headers=headers).status_code == 404


def test_create_validation(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pullrequest:write", repository="api"))
    source = {"branch": {"name": "x"}}
    for body, field in [
        ({"source": source}, "title"),
        ({"title": "  ", "source": source}, "title"),
        ({"title": "t"}, "source"),
        ({"title": "t", "source": {"branch": "x"}}, "source"),
        ({"title": "t", "source": source, "destination": {}}, "destination"),
    ]:
        response = host_client.post(PRS, json=body, headers=headers)
        assert response.status_code == 400, body
        assert field in response.get_json()["error"]["fields"]
