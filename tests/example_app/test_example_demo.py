"""The README demo: the seed, the printed story, and the story replayed."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import example_app
from example_app import create_app
from example_app import demo
from example_app.extensions import db
from example_app.extensions import tokens
from example_app.models import Repository
from example_app.models import User

REPO_ROOT = Path(example_app.__file__).resolve().parent.parent


def counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        users = len(db.session.scalars(db.select(User)).all())
        repos = len(db.session.scalars(db.select(Repository)).all())
        return users, repos


def test_walkthrough(host_app: Flask, host_client: FlaskClient) -> None:
    """The README's curl story, step by step, against the app."""
    with host_app.app_context():
        minted = demo.create_demo_tokens()
        before, after = demo.story(minted)
        repository_token_id = minted.repository.token.id
    for step in before:
        response = host_client.get(step.path, headers={"Authorization": f"Bearer {step.token}"})
        assert response.status_code == step.status, step.explanation

    result = host_app.test_cli_runner().invoke(
        args=["access-tokens", "revoke", repository_token_id]
    )
    assert result.exit_code == 0, result.output

    for step in after:
        response = host_client.get(step.path, headers={"Authorization": f"Bearer {step.token}"})
        assert response.status_code == step.status, step.explanation
    assert [s.status for s in before + after][:3] + [after[-1].status] == [200, 403, 403, 401]
    # The workspace token reads: Bitbucket's admin scopes include no read,
    # so the demo gives it ``repository`` too.
    workspace_steps = [s for s in before if s.token == minted.workspace.secret]
    assert [s.status for s in workspace_steps] == [200, 200, 403]


def test_demo_command_seeds_prints_and_serves(
    host_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[int] = []
    monkeypatch.setattr(demo, "serve", lambda app, port: served.append(port))
    runner = host_app.test_cli_runner()
    for _ in range(2):  # running it twice works
        result = runner.invoke(args=["demo", "--port", "5055"])
        assert result.exit_code == 0, result.output
    assert served == [5055, 5055]
    out = result.output
    assert "alice/demo, bob/demo" in out
    assert "http://127.0.0.1:5055/login" in out
    assert re.search(r"git clone http://x-token-auth:bbat_\S+@127\.0\.0\.1:5055/acme/api\.git", out)
    assert out.count("curl -i -H 'Authorization: Bearer bbat_") == 9
    assert out.count("git clone http://x-token-auth:bbat_") == 2
    assert "admin scopes include no read access" in out
    revoke = [line for line in out.splitlines() if " access-tokens revoke " in line]
    assert revoke == [demo.revoke_command(minted_ids(host_app)[0])]
    assert revoke[0].startswith(f"cd {shlex.quote(str(REPO_ROOT))} && ")
    with host_app.app_context():
        assert len(tokens.list_tokens("acme", repository="api")) == 2
        assert len(tokens.list_tokens("acme", project="API")) == 2
        assert len(tokens.list_tokens("acme")) == 2


def minted_ids(app: Flask) -> list[str]:
    """Ids of the demo's repository tokens, newest first."""
    with app.app_context():
        return [t.id for t in tokens.list_tokens("acme", repository="api")]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_demo_on_a_taken_port_names_the_option_and_prints_nothing(
    host_app: Flask, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    served: list[int] = []
    monkeypatch.setattr(demo, "serve", lambda app, port: served.append(port))
    result = host_app.test_cli_runner().invoke(args=["demo", "--port", str(taken_port)])
    assert result.exit_code == 1
    assert f"Port {taken_port} on 127.0.0.1 is already in use" in result.output
    assert "--port" in result.output
    for printed in ("bbat_", "curl", "Sign in", "demo/"):
        assert printed not in result.output
    assert served == []
    assert minted_ids(host_app) == []


def test_demo_process_on_a_taken_port_fails_clearly(tmp_path: Path, taken_port: int) -> None:
    env = {
        **os.environ,
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite'}",
        "FLASK_GIT_ROOT": str(tmp_path / "git"),
        "FLASK_SECRET_KEY": "demo test key",
    }
    result = subprocess.run(
        [sys.executable, "-m", "example_app", "demo", "--port", str(taken_port)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--port" in result.stderr
    assert "bbat_" not in result.stdout + result.stderr


def test_free_port_is_free(taken_port: int) -> None:
    assert demo.port_in_use(taken_port)
    assert not demo.port_in_use(free_port())


def test_seed_demo_is_idempotent(host_app: Flask) -> None:
    before = counts(host_app)
    result = host_app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0
    assert "alice or bob" in result.output
    assert counts(host_app) == before == (2, 4)


def test_seed_demo_restores_missing_pieces(tmp_path: Path) -> None:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'fresh.sqlite'}",
            "SECRET_KEY": "k",
            "GIT_ROOT": str(tmp_path / "git"),
        }
    )
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    shutil.rmtree(tmp_path / "git" / "hobby" / "notes.git")
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    assert (tmp_path / "git" / "hobby" / "notes.git" / "HEAD").is_file()
    assert counts(app) == (2, 4)
    with app.app_context():
        db.engine.dispose()


def test_default_config_lives_in_the_instance_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(tmp_path / "inst"))
    app = create_app()
    assert (
        app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'inst' / 'example.sqlite'}"
    )
    assert app.config["GIT_ROOT"] == str(tmp_path / "inst" / "git")
    key = (tmp_path / "inst" / "secret_key").read_text()
    assert app.config["SECRET_KEY"] == key
    assert create_app().config["SECRET_KEY"] == key  # kept across restarts
    assert create_app({"SECRET_KEY": "given"}).config["SECRET_KEY"] == "given"
    with app.app_context():
        db.engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[tuple[Path, int, dict[str, str]]]:
    """``python -m example_app demo`` for real, configured through FLASK_* variables."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.sqlite'}",
        "FLASK_GIT_ROOT": str(tmp_path / "git"),
        "FLASK_SECRET_KEY": "demo test key",
    }
    output = tmp_path / "demo.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "example_app", "demo", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, output.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo server did not start"
                time.sleep(0.2)
        yield output, port, env
    finally:
        process.terminate()
        process.wait(timeout=10)


def sign_in_answers(base_url: str, username: str, password: str) -> str:
    """Sign in through the form as a browser would; where it lands."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base_url}/login", timeout=30) as page:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
    assert found is not None
    form = {"username": username, "password": password, "csrf_token": found.group(1)}
    body = urllib.parse.urlencode(form).encode()
    with opener.open(f"{base_url}/login", data=body, timeout=30) as landed:
        return str(landed.geturl())


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_every_printed_line_does_what_its_comment_says(
    demo_process: tuple[Path, int, dict[str, str]], git_env: dict[str, str]
) -> None:
    """Paste every printed line into a shell, as the README tells people to:
    the sign-in line, each token's git clone and curl lines, and the revoke
    line. Every line the demo prints is one of these, or says what follows."""
    output, port, env = demo_process
    base_url = f"http://127.0.0.1:{port}"
    lines = output.read_text().splitlines()
    statuses: list[int] = []
    clones = output.parent / "clones"
    clones.mkdir()
    for index, line in enumerate(lines):
        comment = lines[index - 1] if index else ""
        if line.startswith("curl "):
            args = shlex.split(line)
            result = subprocess.run(
                [*args[:1], "-s", "-o", "-", "-w", "\n%{http_code}", *args[2:]],
                capture_output=True,
                text=True,
                timeout=30,
            )
            body, _, status = result.stdout.rpartition("\n")
            statuses.append(int(status))
            assert statuses[-1] == int(comment.removeprefix("# ")[:3]), comment
            if statuses[-1] == 200 and "every repository in acme" in comment:
                slugs = {repo["slug"] for repo in json.loads(body)["values"]}
                assert slugs == {"api", "lib", "web"}
            if statuses[-1] == 200 and "lists members" in comment:
                assert json.loads(body)["values"], "no members listed"
        elif line.startswith("git clone "):
            assert comment.startswith("# "), f"no comment says what {line!r} does"
            cloned = subprocess.run(
                shlex.split(line), cwd=clones, env=git_env, capture_output=True, timeout=60
            )
            assert cloned.returncode == 0, (comment, cloned.stderr)
            folder = clones / line.rsplit("/", 1)[1].removesuffix(".git")
            head = subprocess.run(
                ["git", "log", "-1", "--format=%s"], cwd=folder, env=git_env,
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert head.returncode == 0 and head.stdout.strip(), f"{folder.name}: no commit"
        elif " -m example_app access-tokens revoke " in line:
            # Pasted somewhere else than the checkout: the line finds its way.
            elsewhere = output.parent / "elsewhere"
            elsewhere.mkdir()
            revoked = subprocess.run(
                ["bash", "-c", line], cwd=elsewhere, env=env, capture_output=True, timeout=60
            )
            assert revoked.returncode == 0, revoked.stderr
        elif line.startswith("Sign in at "):
            found = re.search(r"at (\S+)/login as (.*) \(", line)
            assert found is not None and found.group(1) == base_url
            for pair in found.group(2).split(", "):
                username, password = pair.split("/")
                assert sign_in_answers(base_url, username, password) == f"{base_url}/"
        else:
            # Not a command: blank, a comment, the token list and its notes.
            assert line == "" or line.startswith(("#", "  ", "Tokens ")), line
    assert statuses == [200, 403, 403, 200, 200, 200, 200, 403, 401]
