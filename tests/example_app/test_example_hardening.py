"""Regression tests for the example app's classes of issue 9: open redirects
after sign-in, git smart HTTP parameter confusion, unbounded request bodies,
framing, and names matched whole."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import git_http
from example_app.gitrepos import repository_path

Mint = Callable[..., str]
Headers = Callable[[str], dict[str, str]]
Login = Callable[[str], None]
Csrf = Callable[[], str]

MiB = 1024 * 1024

# -- 1. open redirect after sign-in -------------------------------------------

#: ``next`` values as they appear, percent-encoded, in the query string.
FOREIGN_TARGETS = [
    "//evil.example",
    "///evil.example",
    "////evil.example/",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/%5Cevil.example",
    "%5C%5Cevil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D/evil.example",
    "/%0D%0A/evil.example",
    "%0d%0a",
    "/%0d%0aSet-Cookie:%20x=1",
    "/%00/evil.example",
    "/%7F/evil.example",
    "%09//evil.example",
    "%20//evil.example",
    "/%20/evil.example",
    "/%E3%80%80/evil.example",  # ideographic space
    "/%E2%80%A8/evil.example",  # line separator
    "/%C2%A0/evil.example",  # no-break space
    "/%E2%80%8B/evil.example",  # zero-width space (a format character)
    "%EF%BC%8F%EF%BC%8Fevil.example",  # fullwidth solidus, twice
    "https:evil.example",
    "https:/evil.example",
    "https://evil.example/",
    "HTTPS://evil.example/",
    "http://localhost.evil.example/",
    "//localhost@evil.example/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "evil.example",
    "./evil.example",
    "/" + "a" * 5000,
    "",
]


def sign_in(client: FlaskClient, csrf: Csrf, next_query: str) -> str:
    response = client.post(
        f"/login?next={next_query}",
        data={"username": "alice", "password": "demo", "csrf_token": csrf()},
    )
    assert response.status_code == 302, response.text
    return response.headers["Location"]


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_sign_in_never_redirects_off_site(
    host_client: FlaskClient, csrf: Csrf, target: str
) -> None:
    location = sign_in(host_client, csrf, target)
    assert location == "/"


@pytest.mark.parametrize("target", FOREIGN_TARGETS)
def test_sign_in_page_never_fails_on_next(host_client: FlaskClient, target: str) -> None:
    """Neither the page nor the form it renders carries a target that would be refused."""
    response = host_client.get(f"/login?next={target}")
    assert response.status_code == 200
    assert "evil.example" not in response.text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/acme/", "/acme/"),
        ("%2Facme%2Fapi", "/acme/api"),
        ("/acme/api%3Ftab%3D1", "/acme/api?tab=1"),
        ("/caf%C3%A9", "/caf%C3%A9"),
    ],
)
def test_sign_in_follows_local_paths(
    host_client: FlaskClient, csrf: Csrf, target: str, expected: str
) -> None:
    location = sign_in(host_client, csrf, target)
    assert location == expected
    assert urlsplit(urljoin("http://localhost/login", location)).netloc == "localhost"


def test_sign_in_returns_to_the_page_that_asked(host_client: FlaskClient, csrf: Csrf) -> None:
    asked = host_client.get("/acme/workspace/projects/API?tab=repos")
    assert asked.status_code == 302
    login_url = asked.headers["Location"]
    assert login_url.startswith("/login?next=")
    response = host_client.post(
        login_url,
        data={"username": "alice", "password": "demo", "csrf_token": csrf()},
    )
    assert response.headers["Location"] == "/acme/workspace/projects/API?tab=repos"


# -- 3. git smart HTTP parameter confusion -------------------------------------

INFO_REFS = "/acme/api.git/info/refs"


@pytest.mark.parametrize(
    "query",
    [
        "service=git-upload-pack&service=git-receive-pack",
        "service=git-receive-pack&service=git-upload-pack",
        "service=git-upload-pack&service=git-upload-pack",
        "service=git-upload-pack&%73ervice=git-receive-pack",
        "service=git-upload-pack&service",
        "service=git-upload-pack&other=1",
        "other=1&service=git-upload-pack",
    ],
)
def test_ambiguous_service_parameters_are_refused(
    host_client: FlaskClient, mint: Mint, basic: Headers, query: str
) -> None:
    secret = mint("repository", repository="api")
    response = host_client.get(f"{INFO_REFS}?{query}", headers=basic(secret))
    assert response.status_code == 400
    assert b"git-receive-pack" not in response.data.replace(b"service", b"")
    assert "receive-pack" not in response.mimetype


@pytest.mark.parametrize(
    "query",
    [
        "service=git-receive-pack",
        "service=git-upload-pack;service=git-receive-pack",
        "service=git-upload-pack%00",
        "service=GIT-UPLOAD-PACK",
    ],
)
def test_a_read_token_never_gets_the_push_advertisement(
    host_client: FlaskClient, mint: Mint, basic: Headers, query: str
) -> None:
    secret = mint("repository", repository="api")
    response = host_client.get(f"{INFO_REFS}?{query}", headers=basic(secret))
    assert response.status_code in (403, 404)
    assert response.mimetype != "application/x-git-receive-pack-advertisement"


@pytest.mark.parametrize("service", ["git-upload-pack", "git-receive-pack"])
def test_service_posts_take_no_query(
    host_client: FlaskClient, mint: Mint, basic: Headers, service: str
) -> None:
    secret = mint("repository:write", repository="api")
    response = host_client.post(
        f"/acme/api.git/{service}?service=git-receive-pack",
        headers={**basic(secret), "Content-Type": f"application/x-{service}-request"},
        data=b"0000",
    )
    assert response.status_code == 400


def test_git_is_handed_only_the_authorized_service(
    host_client: FlaskClient, mint: Mint, basic: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if git were told another service than the one checked, its own config
    refuses it: a read token's request runs with receive-pack switched off."""
    original = git_http.cgi_environment

    def confused(path_info: str, service: str, remote_user: str, length: int) -> dict[str, str]:
        env = original(path_info, service, remote_user, length)
        env["QUERY_STRING"] = "service=git-receive-pack"
        return env

    monkeypatch.setattr(git_http, "cgi_environment", confused)
    secret = mint("repository", repository="api")
    response = host_client.get(f"{INFO_REFS}?service=git-upload-pack", headers=basic(secret))
    assert response.mimetype != "application/x-git-receive-pack-advertisement"
    assert response.status_code == 403


def test_the_advertisement_is_still_served(
    host_client: FlaskClient, mint: Mint, basic: Headers
) -> None:
    write = mint("repository:write", repository="api")
    for service in ("git-upload-pack", "git-receive-pack"):
        response = host_client.get(f"{INFO_REFS}?service={service}", headers=basic(write))
        assert response.status_code == 200
        assert response.mimetype == f"application/x-{service}-advertisement"


# -- 5. names matched whole ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/acme/api%0A.git/info/refs?service=git-upload-pack",
        "/acme%0A/api.git/info/refs?service=git-upload-pack",
        "/acme/api%0D%0A.git/info/refs?service=git-upload-pack",
        "/acme/..%2Fhobby%2Fnotes.git/info/refs?service=git-upload-pack",
        "/acme/..git/info/refs?service=git-upload-pack",
        "/../acme/api.git/info/refs?service=git-upload-pack",
        "/acme/.api.git/info/refs?service=git-upload-pack",
        "/acme/api%20.git/info/refs?service=git-upload-pack",
    ],
)
def test_repository_names_are_matched_whole(
    host_client: FlaskClient, mint: Mint, basic: Headers, path: str
) -> None:
    secret = mint("repository", "account")  # a workspace token: binding lets it everywhere
    assert host_client.get(path, headers=basic(secret)).status_code == 404


# -- 4. bounded request bodies --------------------------------------------------


class CountingStream(io.RawIOBase):
    """A request body of ``size`` bytes that counts how much the app read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.size - self.read_bytes)
        buffer[:count] = b"0" * count
        self.read_bytes += count
        return count


def upload_pack(
    client: FlaskClient, headers: dict[str, str], body: CountingStream, *, declared: bool
) -> int:
    environ = {"wsgi.input": body}
    if declared:
        environ["CONTENT_LENGTH"] = str(body.size)
    else:
        environ["wsgi.input_terminated"] = True  # as servers mark a chunked body
    response = client.post(
        "/acme/api.git/git-upload-pack",
        headers={**headers, "Content-Type": "application/x-git-upload-pack-request"},
        environ_overrides=environ,
    )
    return response.status_code


@pytest.mark.parametrize("size", [30 * MiB, git_http.GIT_MAX_FETCH_REQUEST + 1])
def test_declared_large_fetch_body_is_refused_unread(
    host_client: FlaskClient, mint: Mint, basic: Headers, size: int
) -> None:
    secret = mint("repository", repository="api")
    body = CountingStream(size)
    assert upload_pack(host_client, basic(secret), body, declared=True) == 413
    assert body.read_bytes == 0


@pytest.mark.parametrize("size", [30 * MiB, git_http.GIT_MAX_FETCH_REQUEST + 1])
def test_chunked_large_fetch_body_is_read_only_to_the_bound(
    host_client: FlaskClient, mint: Mint, basic: Headers, size: int
) -> None:
    secret = mint("repository", repository="api")
    body = CountingStream(size)
    assert upload_pack(host_client, basic(secret), body, declared=False) == 413
    assert body.read_bytes <= git_http.GIT_MAX_FETCH_REQUEST + 1


def test_configured_fetch_bound(
    host_app: Flask, host_client: FlaskClient, mint: Mint, basic: Headers
) -> None:
    host_app.config["GIT_MAX_FETCH_REQUEST"] = 1000
    secret = mint("repository", repository="api")
    over = CountingStream(1001)
    assert upload_pack(host_client, basic(secret), over, declared=False) == 413
    assert over.read_bytes == 1001
    # At the bound the body reaches git (which finds it is no negotiation).
    at = CountingStream(1000)
    assert upload_pack(host_client, basic(secret), at, declared=True) != 413
    assert at.read_bytes == 1000


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer bbat_nope"}])
def test_large_bodies_without_a_valid_token_are_not_read(
    host_client: FlaskClient, headers: dict[str, str]
) -> None:
    body = CountingStream(30 * MiB)
    assert upload_pack(host_client, headers, body, declared=True) == 401
    assert body.read_bytes == 0


def git(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def push_big_file(
    live_server: str, secret: str, git_env: dict[str, str], work: Path, size: int
) -> subprocess.CompletedProcess[str]:
    url = f"http://x-token-auth:{secret}@{live_server}/acme/api.git"
    assert git(git_env, "clone", "-q", url, str(work)).returncode == 0
    (work / "big.bin").write_bytes(os.urandom(size))  # random: the pack stays this large
    assert git(git_env, "add", "big.bin", cwd=work).returncode == 0
    assert git(git_env, "commit", "-q", "-m", "big", cwd=work).returncode == 0
    return git(git_env, "push", "origin", "main", cwd=work)


def test_push_larger_than_the_fetch_bound_works(
    host_app: Flask, live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    secret = mint("repository:write", repository="api")
    size = git_http.GIT_MAX_FETCH_REQUEST + 2 * MiB
    result = push_big_file(live_server, secret, git_env, tmp_path / "work", size)
    assert result.returncode == 0, result.stderr
    with host_app.app_context():
        bare = repository_path("acme", "api")
    log = git(git_env, "--git-dir", str(bare), "log", "-1", "--format=%s", "main")
    assert log.stdout.strip() == "big"


def test_push_over_the_push_bound_is_refused(
    host_app: Flask, live_server: str, mint: Mint, git_env: dict[str, str], tmp_path: Path
) -> None:
    host_app.config["GIT_MAX_PUSH_REQUEST"] = 256 * 1024
    secret = mint("repository:write", repository="api")
    result = push_big_file(live_server, secret, git_env, tmp_path / "work", 2 * MiB)
    assert result.returncode != 0
    assert "413" in result.stderr
    with host_app.app_context():
        bare = repository_path("acme", "api")
    log = git(git_env, "--git-dir", str(bare), "log", "-1", "--format=%s", "main")
    assert log.stdout.strip() != "big"


# -- framing --------------------------------------------------------------------


SIGNED_IN_PAGES = [
    "/",
    "/acme/",
    "/acme/workspace/projects/API",
    "/acme/api",
    "/acme/api/admin",
    "/acme/workspace/projects/API/settings",
    "/acme/workspace/settings",
    "/admin/repositories/acme/api/access-tokens",
    "/admin/repositories/acme/api/access-tokens/new",
    "/admin/workspaces/acme/access-tokens/all",
    "/acme/nope",  # an HTML error page
]


def assert_not_frameable(headers: object) -> None:
    assert headers["X-Frame-Options"] == "SAMEORIGIN"  # type: ignore[index]
    policy = headers["Content-Security-Policy"]  # type: ignore[index]
    assert "frame-ancestors 'self'" in policy


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_pages_cannot_be_framed_by_other_sites(
    host_client: FlaskClient, login: Login, path: str
) -> None:
    login("alice")
    response = host_client.get(path)
    assert response.mimetype == "text/html"
    assert_not_frameable(response.headers)


@pytest.mark.parametrize("path", ["/login", "/login?next=/acme/", "/acme/"])
def test_signed_out_pages_cannot_be_framed(host_client: FlaskClient, path: str) -> None:
    assert_not_frameable(host_client.get(path).headers)


def test_delete_form_page_cannot_be_framed(host_client: FlaskClient, login: Login) -> None:
    """The one-click delete form is the clickjacking target that was found."""
    login("alice")
    page = host_client.get("/acme/api/admin")
    assert 'action="/acme/api/admin/delete"' in page.text
    assert_not_frameable(page.headers)
