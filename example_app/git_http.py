"""Git over smart HTTP, served by ``git http-backend`` behind access-token checks.

``git clone http://x-token-auth:<token>@host/<workspace>/<repo_slug>.git``

Fetching needs ``repository``; pushing needs ``repository:write``. The scope is
checked before http-backend is started, on the ref advertisement and on the
pack upload alike, so a refused push never writes an object.

http-backend is handed exactly the service that was authorized, and nothing
it could read differently: the query string is rebuilt from the one validated
``service`` value (a repeated parameter is refused: Flask reads the first value,
git the last), and the other service is switched off in git's own config.
Request bodies are bounded before they are spooled: fetch negotiation is small
(``GIT_MAX_FETCH_REQUEST``), pushes may be large (``GIT_MAX_PUSH_REQUEST``).
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import Unauthorized
from werkzeug.wrappers import Response

from flask_accesstokens import InsufficientScope
from flask_accesstokens import verify_token_in_request
from flask_accesstokens import WrongResource

from .gitrepos import git_env
from .gitrepos import git_root
from .gitrepos import repository_path
from .models import find_repository

bp = Blueprint("git", __name__)

FETCH = "git-upload-pack"
PUSH = "git-receive-pack"
REALM = "Git repositories"
CHUNK = 64 * 1024
#: Defaults of the app's config keys of the same name (bytes on the wire).
GIT_MAX_FETCH_REQUEST = 4 * 1024 * 1024
GIT_MAX_PUSH_REQUEST = 1024 * 1024 * 1024

#: A workspace or repository name as it may appear in a path on disk.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def requested_service(git_path: str) -> str:
    """Which service a smart HTTP request is for; anything else (dumb HTTP) is 404.

    The ref advertisement must name its service exactly once and nothing else:
    with two ``service`` values, or a parameter git reads but we don't, the
    request is ambiguous and refused.
    """
    if git_path == "info/refs" and request.method == "GET" and request.query_string:
        args: MultiDict[str, str] = request.args
        if list(args.keys()) != ["service"] or len(args.getlist("service")) != 1:
            abort(400, description="Expected exactly one query parameter: service.")
        service = args["service"]
        if service in (FETCH, PUSH):
            return service
    elif git_path in (FETCH, PUSH) and request.method == "POST":
        if request.query_string:
            abort(400, description="git's service requests take no query parameters.")
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
    if not (NAME.fullmatch(workspace) and NAME.fullmatch(repo_slug)):
        abort(404)
    service = requested_service(git_path)
    scope = "repository:write" if service == PUSH else "repository"
    try:
        token = verify_token_in_request(scope)
    except Unauthorized as error:
        return challenge(error.description or "Authentication required.")
    except Forbidden as error:
        # git shows a text/plain error body as "remote: ..." lines: say
        # plainly what is wrong, and for a missing scope which one git needs.
        message = error.description or "Forbidden"
        if isinstance(error, InsufficientScope) and not isinstance(error, WrongResource):
            needs = "git push needs" if service == PUSH else "git clone and fetch need"
            message += f" {needs} the {scope} scope."
        return Response(
            message + "\n", 403, {"Cache-Control": "no-store"}, mimetype="text/plain"
        )
    assert token is not None
    path = repository_path(workspace, repo_slug)
    if find_repository(workspace, repo_slug) is None or not (path / "HEAD").is_file():
        abort(404)
    return run_http_backend(
        f"/{workspace}/{repo_slug}.git/{git_path}", service, remote_user=token.name
    )


# The URL to clone a repository, for url_for: it is served by smart_http.
bp.add_url_rule("/<workspace>/<repo_slug>.git", endpoint="clone", build_only=True)


def only_service(service: str) -> dict[str, str]:
    """git config, through the environment, that turns the other service off,
    so http-backend cannot serve what was not authorized whatever it reads."""
    other = "receivepack" if service == FETCH else "uploadpack"
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{other}",
        "GIT_CONFIG_VALUE_0": "false",
    }


def cgi_environment(
    path_info: str, service: str, remote_user: str, content_length: int
) -> dict[str, str]:
    # Rebuilt, never copied: git reads the last of repeated parameters.
    query = f"service={service}" if path_info.endswith("/info/refs") else ""
    env = {
        **git_env(),
        **only_service(service),
        "GIT_PROJECT_ROOT": str(git_root()),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
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


def body_limit(service: str) -> int:
    key = "GIT_MAX_PUSH_REQUEST" if service == PUSH else "GIT_MAX_FETCH_REQUEST"
    default = GIT_MAX_PUSH_REQUEST if service == PUSH else GIT_MAX_FETCH_REQUEST
    return int(current_app.config.get(key, default))


def spool_body(limit: int) -> IO[bytes]:
    """The request body in a temporary file, or 413 once it passes ``limit``.

    A declared length over the limit is refused before a byte is read; a
    chunked body is read only up to one byte past it.
    """
    # This route's own limit in place of the app's MAX_CONTENT_LENGTH; one
    # byte more, so the loop below can tell a body at the bound from one past.
    request.max_content_length = limit + 1
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge(f"A request to this service may carry at most {limit} bytes.")
    body = tempfile.TemporaryFile()
    size = 0
    try:
        while chunk := request.stream.read(min(CHUNK, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge(
                    f"A request to this service may carry at most {limit} bytes."
                )
            body.write(chunk)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body


def run_http_backend(path_info: str, service: str, remote_user: str) -> Response:
    # The body is spooled to a file first: git may send it chunked, and a file
    # as stdin cannot deadlock against http-backend's output.
    body = spool_body(body_limit(service))
    length = body.seek(0, 2)
    body.seek(0)
    errors = tempfile.TemporaryFile()
    with body:
        process = subprocess.Popen(
            ["git", "http-backend"],
            stdin=body,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=cgi_environment(path_info, service, remote_user, length),
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
