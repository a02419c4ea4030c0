"""``flask access-tokens``: the operator's commands, and the tokens they make."""

from __future__ import annotations

import json
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens


@pytest.fixture
def cli(app: Flask) -> Any:
    runner = app.test_cli_runner()

    def run(*args: str) -> Any:
        return runner.invoke(args=["access-tokens", *args])

    return run


def create(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("create", "--workspace", "acme", "--name", "CI", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_create_prints_the_secret_once(cli: Any, client: Any) -> None:
    result = cli(
        "create", "--workspace", "acme", "--repository", "api", "--name", "deploy",
        "--scope", "repository:write", "--scope", "webhook",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    secret = next(w for w in result.stdout.split() if w.startswith("bbat_"))
    assert "shown once" in result.stdout
    assert client.post("/repositories/acme/api/push", headers=bearer(secret)).status_code == 200
    assert client.get("/repositories/acme/web", headers=bearer(secret)).status_code == 403

    token_id = json.loads(
        cli("list", "--workspace", "acme", "--repository", "api", "--json").stdout
    )[0]["id"]
    for args in (("show", token_id), ("show", token_id, "--json"), ("list", "--workspace", "acme",
                 "--all-in-workspace")):  # fmt: skip
        shown = cli(*args)
        assert shown.exit_code == 0
        assert token_id in shown.stdout
        assert secret not in shown.stdout


def test_create_json_and_actor(cli: Any, client: Any) -> None:
    data = create(cli, "--project", "API", "--scope", "project", "--actor", "ops")
    assert data["type"] == "project" and data["project"] == "API"
    assert data["created_by"] == "ops"
    assert client.get("/repositories/acme/lib", headers=bearer(data["token"])).status_code == 200
    assert create(cli, "--scope", "account")["created_by"] == "cli"


def test_create_with_expiry(cli: Any, client: Any, db: SQLAlchemy) -> None:
    soon = (datetime.now(timezone.utc) + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    data = create(cli, "--repository", "api", "--scope", "repository", "--expires-at", soon)
    assert data["expires_at"] is not None
    token = db.session.get(AccessToken, data["id"])
    assert token is not None
    token.expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 401
    listed = json.loads(cli("list", "--workspace", "acme", "--repository", "api", "--json").stdout)
    assert listed[0]["state"] == "expired"


def test_expires_at_takes_a_date_as_midnight_utc(cli: Any) -> None:
    """As the admin form's date field does: the token stops at 00:00 UTC that day."""
    result = cli(
        "create", "--workspace", "acme", "--repository", "api", "--name", "CI",
        "--scope", "repository", "--expires-at", "2030-01-01", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["expires_at"] in (
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00+00:00",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--repository", "api", "--scope", "nope"), "unknown scope"),
        (
            ("--repository", "api", "--scope", "repository:wirte"),
            "did you mean 'repository:write'?",
        ),
        (("--repository", "api", "--scope", "account"), "cannot hold"),
        (("--repository", "api", "--project", "API", "--scope", "repository"), "not both"),
        (
            ("--repository", "api", "--scope", "repository", "--expires-at", "2999-01-01T10:00"),
            "timezone",
        ),
        (("--repository", "api", "--scope", "repository", "--expires-at", "soon"), "ISO 8601"),
        (
            (
                "--repository",
                "api",
                "--scope",
                "repository",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ),
            "future",
        ),
        (("--repository", "api"), "--scope"),
    ],
)
def test_create_errors(cli: Any, db: SQLAlchemy, args: tuple[str, ...], message: str) -> None:
    result = cli("create", "--workspace", "acme", "--name", "CI", *args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "bbat_" not in result.stdout
    assert db.session.query(AccessToken).count() == 0


def test_create_respects_plan_gating(cli: Any, tokens: AccessTokens, db: SQLAlchemy) -> None:
    @tokens.allowed_token_types_loader
    def token_types(workspace: str) -> tuple[str, ...]:
        return ("repository",)

    result = cli("create", "--workspace", "acme", "--project", "API", "--name", "x",
                 "--scope", "project")  # fmt: skip
    assert result.exit_code == 1
    assert "plan" in result.stderr
    assert db.session.query(AccessToken).count() == 0


def test_list(cli: Any) -> None:
    repo = create(cli, "--repository", "api", "--scope", "repository")
    create(cli, "--repository", "lib", "--scope", "repository")
    project = create(cli, "--project", "API", "--scope", "project")
    assert cli("revoke", repo["id"]).exit_code == 0

    def ids(*args: str) -> list[str]:
        result = cli("list", "--workspace", "acme", "--json", *args)
        assert result.exit_code == 0, result.output
        return [t["id"] for t in json.loads(result.stdout)]

    assert ids("--repository", "api") == [repo["id"]]
    assert ids("--project", "API") == [project["id"]]
    assert ids() == []  # no workspace tokens
    assert len(ids("--all-in-workspace")) == 3
    assert ids("--all-in-workspace", "--state", "revoked") == [repo["id"]]
    assert repo["id"] not in ids("--all-in-workspace", "--state", "active")

    table = cli("list", "--workspace", "acme", "--all-in-workspace")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "TYPE", "RESOURCE"]
    assert len(lines) == 4
    assert any("project API in workspace acme" in line and "never" in line for line in lines)
    assert cli("list", "--workspace", "nowhere").stdout.strip() == "No access tokens."
    # (third round) --all lists a resource's subtree: a repository's is itself.
    assert ids("--all-in-workspace", "--repository", "api") == [repo["id"]]


def test_revoke(cli: Any, client: Any) -> None:
    data = create(cli, "--repository", "api", "--scope", "repository")
    assert client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 200
    result = cli("revoke", data["id"], "--actor", "incident-42")
    assert result.exit_code == 0 and "Revoked" in result.stdout
    assert client.get("/repositories/acme/api", headers=bearer(data["token"])).status_code == 401
    again = cli("revoke", data["id"])
    assert again.exit_code == 0 and "already" in again.stdout
    shown = json.loads(cli("show", data["id"], "--json").stdout)
    assert shown["state"] == "revoked" and shown["revoked_by"] == "incident-42"


@pytest.mark.parametrize("command", ["show", "revoke", "rotate"])
def test_unknown_id(cli: Any, command: str) -> None:
    result = cli(command, "0" * 32)
    assert result.exit_code == 1
    assert "No access token" in result.stderr


def test_rotate(cli: Any, client: Any) -> None:
    old = create(cli, "--repository", "api", "--scope", "repository")
    result = cli("rotate", old["id"], "--json")
    assert result.exit_code == 0, result.output
    new = json.loads(result.stdout)
    assert new["id"] == old["id"] and new["token"] != old["token"]
    assert client.get("/repositories/acme/api", headers=bearer(new["token"])).status_code == 200
    assert client.get("/repositories/acme/api", headers=bearer(old["token"])).status_code == 401

    # The rotated-out secret was presented after its (zero) grace window:
    # whoever holds it may hold the new one too, so the token is revoked.
    shown = json.loads(cli("show", old["id"], "--json").stdout)
    assert shown["state"] == "revoked"
    assert client.get("/repositories/acme/api", headers=bearer(new["token"])).status_code == 401
    refused = cli("rotate", old["id"])
    assert refused.exit_code == 1 and "revoked" in refused.stderr


def test_rotate_with_grace(cli: Any, client: Any) -> None:
    old = create(cli, "--repository", "api", "--scope", "repository")
    graced = cli("rotate", old["id"], "--grace", "300")
    assert graced.exit_code == 0
    new = next(w for w in graced.stdout.split() if w.startswith("bbat_"))
    for secret in (old["token"], new):
        assert client.get("/repositories/acme/api", headers=bearer(secret)).status_code == 200
    assert cli("rotate", old["id"], "--grace", "1801").exit_code == 2


def test_prune(cli: Any, db: SQLAlchemy) -> None:
    live = create(cli, "--repository", "api", "--scope", "repository")
    recent = create(cli, "--repository", "api", "--scope", "repository")
    old = create(cli, "--repository", "api", "--scope", "repository")
    expired = create(cli, "--repository", "api", "--scope", "repository")
    cli("revoke", recent["id"])
    cli("revoke", old["id"])
    long_ago = datetime.now(timezone.utc) - timedelta(days=100)
    old_token = db.session.get(AccessToken, old["id"])
    expired_token = db.session.get(AccessToken, expired["id"])
    assert old_token is not None and expired_token is not None
    old_token.revoked_at = long_ago
    expired_token.expires_at = long_ago
    db.session.commit()

    dry = cli("prune", "--older-than-days", "90", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would delete 2 access tokens." in dry.stdout
    assert old["id"] in dry.stdout and expired["id"] in dry.stdout
    assert db.session.query(AccessToken).count() == 4

    done = cli("prune", "--older-than-days", "90")
    assert done.exit_code == 0, done.output
    assert "Deleted 2 access tokens." in done.stdout
    assert old["id"] in done.stdout
    remaining = {t.id for t in db.session.query(AccessToken)}
    assert remaining == {live["id"], recent["id"]}
    assert cli("show", old["id"]).exit_code == 1

    assert cli("prune").exit_code == 2  # --older-than-days is required
    assert cli("prune", "--older-than-days", "-1").exit_code == 2
    assert cli("prune", "--older-than-days", "99999999999").exit_code == 2
