"""``python -m example_app demo``: seed, mint one token of each type, print the
curl story, and serve on 127.0.0.1.

The story is data (:func:`story`), so the printed lines and the walkthrough
test that replays them cannot drift apart.
"""

from __future__ import annotations

import errno
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from flask_accesstokens import NewToken

from .extensions import tokens
from .seed import DEMO_PASSWORD
from .seed import seed_demo
from .seed import USERS

HOST = "127.0.0.1"


@dataclass(frozen=True)
class DemoTokens:
    repository: NewToken
    project: NewToken
    workspace: NewToken


@dataclass(frozen=True)
class Step:
    """One request of the story and the status it shows."""

    explanation: str
    token: str
    path: str
    status: int


def create_demo_tokens() -> DemoTokens:
    """Fresh tokens each run, named by the time, so running the demo twice just adds more."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return DemoTokens(
        repository=tokens.create_token(
            name=f"Demo CI {stamp}",
            workspace="acme",
            repository="api",
            scopes=["repository:write", "pullrequest:write"],
            created_by="alice",
        ),
        project=tokens.create_token(
            name=f"Demo project bot {stamp}",
            workspace="acme",
            project="API",
            scopes=["project", "pullrequest"],
            created_by="alice",
        ),
        # Admin scopes include no read (Bitbucket's rule): ``repository`` is
        # what lets this token list, read and clone every repository.
        workspace=tokens.create_token(
            name=f"Demo workspace admin {stamp}",
            workspace="acme",
            scopes=["account", "project:admin", "repository", "repository:admin"],
            created_by="alice",
        ),
    )


def story(demo: DemoTokens) -> tuple[list[Step], list[Step]]:
    """The requests before and after revoking the repository token."""
    repo, project, workspace = demo.repository.secret, demo.project.secret, demo.workspace.secret
    before = [
        Step(
            "200: the repository token reads its repository",
            repo,
            "/2.0/repositories/acme/api",
            200,
        ),
        Step("403: it lacks the webhook scope", repo, "/2.0/repositories/acme/api/hooks", 403),
        Step("403: it is bound to acme/api, not acme/web", repo, "/2.0/repositories/acme/web", 403),
        Step(
            "200: the project token reads its project",
            project,
            "/2.0/workspaces/acme/projects/API",
            200,
        ),
        Step(
            "200: ...and every repository in it",
            project,
            "/2.0/repositories/acme/lib/pullrequests",
            200,
        ),
        Step(
            "200: the workspace token lists members", workspace, "/2.0/workspaces/acme/members", 200
        ),
        Step(
            "200: ...and every repository in acme",
            workspace,
            "/2.0/repositories/acme",
            200,
        ),
        Step(
            "403: it is bound to acme, not hobby",
            workspace,
            "/2.0/workspaces/hobby/members",
            403,
        ),
    ]
    after = [Step("401: a revoked token is dead at once", repo, "/2.0/repositories/acme/api", 401)]
    return before, after


def python_command() -> str:
    """How to call this interpreter in the user's shell."""
    return "python" if shutil.which("python") == sys.executable else shlex.quote(sys.executable)


def checkout_folder() -> str:
    """The folder ``python -m example_app`` imports this app from."""
    return str(Path(__file__).resolve().parent.parent)


def revoke_command(token_id: str) -> str:
    """A line that works from wherever the user pastes it: it goes to the
    checkout first, where ``-m example_app`` finds the app and its instance folder."""
    return (
        f"cd {shlex.quote(checkout_folder())} && "
        f"{python_command()} -m example_app access-tokens revoke {token_id}"
    )


def port_in_use(port: int) -> bool:
    """Whether something already listens on ``HOST:port``. Bound the way the
    server will bind it (address reuse on), so a port that only lingers in
    TIME_WAIT after a previous demo counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def curl(base_url: str, step: Step) -> str:
    header = f"Authorization: Bearer {step.token}"
    return f"# {step.explanation}\ncurl -i -H '{header}' {base_url}{step.path}"


def instructions(base_url: str, demo: DemoTokens) -> str:
    before, after = story(demo)
    users = ", ".join(f"{name}/{DEMO_PASSWORD}" for name in USERS)
    host = base_url.split("://", 1)[1]
    lines = [
        f"Sign in at {base_url}/login as {users} (alice is the admin).",
        "",
        "Tokens (shown once; they are stored only as digests):",
        f"  repository acme/api   {demo.repository.secret}",
        f"      scopes {' '.join(demo.repository.token.scopes)}",
        f"  project    acme/API   {demo.project.secret}",
        f"      scopes {' '.join(demo.project.token.scopes)}",
        f"  workspace  acme       {demo.workspace.secret}",
        f"      scopes {' '.join(demo.workspace.token.scopes)}",
        "      (admin scopes include no read access: repository is what lets it read and clone)",
        "",
        "# git over HTTP with the repository token",
        f"git clone http://x-token-auth:{demo.repository.secret}@{host}/acme/api.git",
        "# ...and with the workspace token, any repository in acme",
        f"git clone http://x-token-auth:{demo.workspace.secret}@{host}/acme/web.git",
        "",
        *(curl(base_url, step) + "\n" for step in before),
        "# revoke the repository token...",
        revoke_command(demo.repository.token.id),
        "",
        *(curl(base_url, step) + "\n" for step in after),
    ]
    return "\n".join(lines)


def serve(app: object, port: int) -> None:
    run_simple(HOST, port, app, threaded=True)  # type: ignore[arg-type]


@click.command("demo")
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port on 127.0.0.1.",
)
@with_appcontext
def demo_command(port: int) -> None:
    """Seed the demo data, mint a token of each type, print how to try them, and serve."""
    # Checked first: credentials and curl lines for a port another program
    # answers on would send the user's requests there.
    if port_in_use(port):
        raise click.ClickException(
            f"Port {port} on {HOST} is already in use by another program. "
            f"Choose a free one with --port, e.g. --port {port + 1 if port < 65535 else 5001}."
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.config["EXAMPLE_DEMO"] = True  # the sign-in page shows the demo credentials
    seed_demo()
    click.echo(instructions(f"http://{HOST}:{port}", create_demo_tokens()))
    serve(app, port)
