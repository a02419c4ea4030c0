"""Git over smart HTTP, served by ``git http-backend`` behind access-token checks.

``git clone http://x-token-auth:<token>@host/<workspace>/<repo_slug>.git``

Fetching needs ``repository``; pushing needs ``repository:write``. The scope is
checked before http-backend is started, on the ref advertisement and on the
pack upload alike, so a refused push never writes an object.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import request
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import Unauthorized
from werkzeug.wrappers import Response

from flask_accesstokens import verify_token_in_request

from .gitrepos import git_env
from .gitrepos import git_root
from .gitrepos import repository_path
from .models import find_repository

bp = Blueprint("git", __name__)

FETCH = "git-upload-pack"
PUSH = "git-receive-pack"
REALM = "Git repositories"
CHUNK = 64 * 1024


def requested_service(git_path: str) -> str:
    """Which service a smart HTTP request is for; anything else (dumb HTTP) is 404."""
    if git_path == "info/refs" and request.method == "GET":
        service = request.args.get("service")
        if service in (FETCH, PUSH):
            return service
    elif git_path in (FETCH, PUSH) and request.method == "POST":
        return git_path
    abort(404)


def challenge(message: str) -> Response:
    # git (through libcurl) only retries with credentials when offered Basic;
    # the extension's Bearer challenge would end the clone right there.
    return Response(
        message + "\n",
        401,
        {"WWW-Authenticate": f'Basic realm="{REALM}"', "Cache-Control": "no-store"},
        mimetype="text/plain",
    )


@bp.route("/<workspace>/<repo_slug>.git/<path:git_path>", methods=["GET", "POST"])
def smart_http(workspace: str, repo_slug: str, git_path: str) -> Response:
    service = requested_service(git_path)
    scope = "repository:write" if service == PUSH else "repository"
    try:
        token = verify_token_in_request(scope)
    except Unauthorized as error:
        return challenge(error.description or "Authentication required.")
    except Forbidden as error:
        return Response((error.description or "Forbidden") + "\n", 403, mimetype="text/plain")
    assert token is not None
    path = repository_path(workspace, repo_slug)
    if find_repository(workspace, repo_slug) is None or not (path / "HEAD").is_file():
        abort(404)
    return run_http_backend(f"/{workspace}/{repo_slug}.git/{git_path}", remote_user=token.name)


def cgi_environment(path_info: str, remote_user: str, content_length: int) -> dict[str, str]:
    env = {
        **git_env(),
        "GIT_PROJECT_ROOT": str(git_root()),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path_info,
        "QUERY_STRING": request.query_string.decode("latin-1"),
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(content_length),
        # http-backend only enables receive-pack for an authenticated user.
        "REMOTE_USER": remote_user,
        "REMOTE_ADDR": request.remote_addr or "",
    }
    for header in ("Content-Encoding", "Git-Protocol"):
        if header in request.headers:
            env["HTTP_" + header.upper().replace("-", "_")] = request.headers[header]
    return env


def run_http_backend(path_info: str, remote_user: str) -> Response:
    # The body is spooled to a file first: git may send it chunked, and a file
    # as stdin cannot deadlock against http-backend's output.
    body = tempfile.TemporaryFile()
    shutil.copyfileobj(request.stream, body, CHUNK)
    length = body.tell()
    body.seek(0)
    errors = tempfile.TemporaryFile()
    with body:
        process = subprocess.Popen(
            ["git", "http-backend"],
            stdin=body,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=cgi_environment(path_info, remote_user, length),
            cwd=git_root(),
        )
    assert process.stdout is not None
    status, headers = read_cgi_headers(process.stdout)
    # Captured now: the body is streamed after the app context is gone.
    logger = current_app.logger
    return Response(
        stream_output(process, process.stdout, errors, logger, path_info),
        status=status,
        headers=headers,
        direct_passthrough=True,
    )


def read_cgi_headers(stdout: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while line := stdout.readline().rstrip(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers


def stream_output(
    process: subprocess.Popen[bytes],
    stdout: IO[bytes],
    errors: IO[bytes],
    logger: logging.Logger,
    path_info: str,
) -> Iterator[bytes]:
    try:
        while chunk := stdout.read1(CHUNK):  # type: ignore[attr-defined]
            yield chunk
    finally:
        stdout.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
        errors.close()
        if process.returncode != 0 or message:
            logger.warning(
                "git http-backend %s exited %s: %s", path_info, process.returncode, message
            )
