"""Git over smart HTTP with the real git binary against the running app."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app.extensions import tokens
from example_app.gitrepos import repository_path

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]


def git(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def url(server: str, secret: str, repo: str = "acme/api") -> str:
    return f"http://x-token-auth:{secret}@{server}/{repo}.git"


def bare(app: Flask, workspace: str = "acme", slug: str = "api") -> Path:
    with app.app_context():
        return repository_path(workspace, slug)


def snapshot(path: Path) -> tuple[str, frozenset[str]]:
    """The refs and every object file of a bare repository."""
    refs = subprocess.run(
        ["git", "--git-dir", str(path), "for-each-ref"], capture_output=True, text=True, check=True
    ).stdout
    objects = frozenset(
        str(p.relative_to(path)) for p in (path / "objects").rglob("*") if p.is_file()
    )
    return refs, objects


def commit_change(env: dict[str, str], work: Path, text: str) -> None:
    (work / "CHANGE.md").write_text(text)
    assert git(env, "add", "CHANGE.md", cwd=work).returncode == 0
    assert git(env, "commit", "-q", "-m", text, cwd=work).returncode == 0


def test_clone_with_repository_token(
    live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository", repository="api")
    result = git(git_env, "clone", url(live_server, secret), str(tmp_path / "api"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "api" / "README.md").read_text() == "# acme/api\n"
    branch = git(git_env, "branch", "--show-current", cwd=tmp_path / "api")
    assert branch.stdout.strip() == "main"


def test_push_with_write_token(
    host_app: Flask, live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository:write", repository="api")
    work = tmp_path / "api"
    assert git(git_env, "clone", "-q", url(live_server, secret), str(work)).returncode == 0
    commit_change(git_env, work, "pushed over HTTP")
    result = git(git_env, "push", "origin", "main", cwd=work)
    assert result.returncode == 0, result.stderr
    log = git(git_env, "--git-dir", str(bare(host_app)), "log", "-1", "--format=%s", "main")
    assert log.stdout.strip() == "pushed over HTTP"


def test_push_refused_with_read_token_writes_nothing(
    host_app: Flask, live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository", repository="api")
    work = tmp_path / "api"
    assert git(git_env, "clone", "-q", url(live_server, secret), str(work)).returncode == 0
    commit_change(git_env, work, "should never land")
    before = snapshot(bare(host_app))
    result = git(git_env, "push", "origin", "main", cwd=work)
    assert result.returncode != 0
    assert "403" in result.stderr
    assert (
        "remote: " in result.stderr and "git push needs the repository:write scope" in result.stderr
    )
    assert snapshot(bare(host_app)) == before


@pytest.mark.parametrize(
    "request_line",
    [
        ("GET", "/acme/api.git/info/refs?service=git-receive-pack"),
        ("POST", "/acme/api.git/git-receive-pack"),
    ],
)
def test_receive_pack_needs_write_scope_on_both_requests(
    host_app: Flask,
    host_client: FlaskClient,
    mint: Mint,
    basic: Headers,
    request_line: tuple[str, str],
) -> None:
    secret = mint("repository", repository="api")
    before = snapshot(bare(host_app))
    method, path = request_line
    response = host_client.open(
        path,
        method=method,
        headers={**basic(secret), "Content-Type": "application/x-git-receive-pack-request"},
        data=b"0000",
    )
    assert response.status_code == 403
    assert snapshot(bare(host_app)) == before


def test_revoked_token_can_neither_clone_nor_push(
    host_app: Flask, live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository:write", repository="api", name="soon revoked")
    work = tmp_path / "api"
    assert git(git_env, "clone", "-q", url(live_server, secret), str(work)).returncode == 0
    commit_change(git_env, work, "after revocation")
    with host_app.app_context():
        (token,) = tokens.list_tokens("acme", repository="api")
        tokens.revoke_token(token.id, revoked_by="alice")
    before = snapshot(bare(host_app))

    push = git(git_env, "push", "origin", "main", cwd=work)
    assert push.returncode != 0
    assert "Authentication failed" in push.stderr
    clone = git(git_env, "clone", url(live_server, secret), str(tmp_path / "again"))
    assert clone.returncode != 0
    assert "Authentication failed" in clone.stderr
    assert snapshot(bare(host_app)) == before


def test_token_of_another_repository_cannot_clone(
    live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository", repository="web")
    result = git(git_env, "clone", url(live_server, secret), str(tmp_path / "api"))
    assert result.returncode != 0
    assert "403" in result.stderr
    # Said plainly, not as a missing scope the token in fact holds.
    assert "remote: This access token is not for this" in result.stderr
    assert "scope" not in result.stderr


def test_project_token_follows_a_moved_repository(
    live_server: str,
    host_client: FlaskClient,
    mint: Mint,
    bearer: Headers,
    git_env: dict[str, str],
    tmp_path: Path,
) -> None:
    api_project = mint("repository", project="API")
    admin = mint("repository:admin", name="admin")
    assert (
        git(git_env, "clone", "-q", url(live_server, api_project), str(tmp_path / "a")).returncode
        == 0
    )

    moved = host_client.put(
        "/2.0/repositories/acme/api", json={"project": {"key": "WEB"}}, headers=bearer(admin)
    )
    assert moved.status_code == 200
    result = git(git_env, "clone", url(live_server, api_project), str(tmp_path / "b"))
    assert result.returncode != 0
    assert "403" in result.stderr


def test_git_asks_for_basic_credentials(host_client: FlaskClient) -> None:
    response = host_client.get("/acme/api.git/info/refs?service=git-upload-pack")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert "Set-Cookie" not in response.headers


def test_bad_token_gets_the_basic_challenge_too(host_client: FlaskClient, basic: Headers) -> None:
    response = host_client.get(
        "/acme/api.git/info/refs?service=git-upload-pack", headers=basic("bbat_not_a_token")
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_ref_advertisement_over_http(host_client: FlaskClient, mint: Mint, basic: Headers) -> None:
    secret = mint("repository", repository="api")
    response = host_client.get(
        "/acme/api.git/info/refs?service=git-upload-pack", headers=basic(secret)
    )
    assert response.status_code == 200
    assert response.mimetype == "application/x-git-upload-pack-advertisement"
    assert b"refs/heads/main" in response.data
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/acme/api.git/HEAD",
        "/acme/api.git/info/refs",
        "/acme/api.git/info/refs?service=git-upload-archive",
        "/acme/api.git/objects/info/packs",
    ],
)
def test_only_smart_http_is_served(
    host_client: FlaskClient, mint: Mint, basic: Headers, path: str
) -> None:
    secret = mint("repository", repository="api")
    assert host_client.get(path, headers=basic(secret)).status_code == 404


def test_missing_repository_is_404_for_a_workspace_token(
    host_client: FlaskClient, mint: Mint, basic: Headers
) -> None:
    secret = mint("project")
    response = host_client.get(
        "/acme/nope.git/info/refs?service=git-upload-pack", headers=basic(secret)
    )
    assert response.status_code == 404
