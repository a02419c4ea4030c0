"""Webhooks, pipelines, pipeline variables and runners."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]

REPO = "/2.0/repositories/acme/api"


def test_webhooks(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("webhook", repository="api", name="Hooker"))
    created = host_client.post(
        f"{REPO}/hooks",
        json={
            "url": "https://ci.example/hook",
            "description": "CI",
            "events": ["repo:push", "pullrequest:created"],
        },
        headers=headers,
    )
    assert created.status_code == 201
    hook = created.get_json()
    assert hook["type"] == "webhook_subscription"
    assert hook["subject"]["full_name"] == "acme/api"
    assert hook["events"] == ["repo:push", "pullrequest:created"]
    listing = host_client.get(f"{REPO}/hooks", headers=headers).get_json()
    assert [h["uuid"] for h in listing["values"]] == [hook["uuid"]]
    one = host_client.get(hook["links"]["self"]["href"], headers=headers)
    assert one.status_code == 200
    assert one.get_json()["url"] == "https://ci.example/hook"
    assert host_client.get(f"{REPO}/hooks/{{nope}}", headers=headers).status_code == 404


def test_webhook_validation(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("webhook", repository="api"))
    for body, field in [
        ({"events": ["repo:push"]}, "url"),
        ({"url": "ftp://x", "events": ["repo:push"]}, "url"),
        ({"url": "https://x"}, "events"),
        ({"url": "https://x", "events": ["repo:explode"]}, "events"),
    ]:
        response = host_client.post(f"{REPO}/hooks", json=body, headers=headers)
        assert response.status_code == 400
        assert field in response.get_json()["error"]["fields"]


def test_pipelines(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pipeline:write", repository="api", name="Scheduler"))
    for _ in range(2):
        response = host_client.post(
            f"{REPO}/pipelines/",
            json={
                "target": {"type": "pipeline_ref_target", "ref_type": "branch", "ref_name": "main"}
            },
            headers=headers,
        )
        assert response.status_code == 201
    pipeline = response.get_json()
    assert pipeline["type"] == "pipeline"
    assert pipeline["build_number"] == 2
    assert pipeline["creator"]["display_name"] == "Scheduler (access token)"
    assert pipeline["target"]["ref_name"] == "main"
    listing = host_client.get(f"{REPO}/pipelines/", headers=headers).get_json()
    assert [p["build_number"] for p in listing["values"]] == [2, 1]
    bad = host_client.post(f"{REPO}/pipelines/", json={}, headers=headers)
    assert bad.status_code == 400
    assert "target" in bad.get_json()["error"]["fields"]


def test_pipelines_without_trailing_slash_redirect(
    host_client: FlaskClient, mint: Mint, bearer: Headers
) -> None:
    headers = bearer(mint("pipeline", repository="api"))
    response = host_client.get(f"{REPO}/pipelines", headers=headers, follow_redirects=True)
    assert response.status_code == 200


def test_variables(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("pipeline:variable", repository="api"))
    path = f"{REPO}/pipelines_config/variables/"
    plain = host_client.post(path, json={"key": "REGION", "value": "eu"}, headers=headers)
    assert plain.status_code == 201
    assert plain.get_json()["value"] == "eu"
    secret = host_client.post(
        path, json={"key": "PASSWORD", "value": "hunter2", "secured": True}, headers=headers
    )
    assert secret.status_code == 201
    assert "value" not in secret.get_json()
    listing = host_client.get(path, headers=headers).get_json()
    assert {v["key"]: v.get("value") for v in listing["values"]} == {
        "REGION": "eu",
        "PASSWORD": None,
    }
    assert "hunter2" not in host_client.get(path, headers=headers).text
    duplicate = host_client.post(path, json={"key": "REGION", "value": "us"}, headers=headers)
    assert duplicate.status_code == 409
    assert duplicate.get_json()["type"] == "error"


def test_repository_runners(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("runner:write", repository="api"))
    path = f"{REPO}/pipelines-config/runners"
    created = host_client.post(path, json={"name": "builder", "labels": ["linux"]}, headers=headers)
    assert created.status_code == 201
    assert created.get_json()["labels"] == ["linux"]
    listing = host_client.get(path, headers=headers).get_json()
    assert [r["name"] for r in listing["values"]] == ["builder"]
    bad = host_client.post(path, json={"name": "x", "labels": "linux"}, headers=headers)
    assert bad.status_code == 400


def test_workspace_runners(host_client: FlaskClient, mint: Mint, bearer: Headers) -> None:
    headers = bearer(mint("runner:write"))
    path = "/2.0/workspaces/acme/pipelines-config/runners"
    assert host_client.post(path, json={"name": "shared"}, headers=headers).status_code == 201
    host_client.post(
        f"{REPO}/pipelines-config/runners", json={"name": "repo only"}, headers=headers
    )
    listing = host_client.get(path, headers=headers).get_json()
    assert [r["name"] for r in listing["values"]] == ["shared"]
    repo_token = bearer(mint("runner:write", repository="api", name="repo"))
    assert host_client.get(path, headers=repo_token).status_code == 403
