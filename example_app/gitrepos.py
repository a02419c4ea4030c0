"""Bare git repositories on disk, one per repository row: ``GIT_ROOT/<workspace>/<slug>.git``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from flask import current_app

MAIN_BRANCH = "main"

# Explicit identity and no system or global config, so this works on a machine
# where git was never configured, and a user's config cannot change the result.
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Example App",
    "GIT_AUTHOR_EMAIL": "example-app@example.invalid",
    "GIT_COMMITTER_NAME": "Example App",
    "GIT_COMMITTER_EMAIL": "example-app@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git_root() -> Path:
    return Path(current_app.config["GIT_ROOT"])


def repository_path(workspace: str, slug: str) -> Path:
    return git_root() / workspace / f"{slug}.git"


def git_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), **_GIT_IDENTITY}


def _git(path: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(path), *args],
        input=stdin,
        capture_output=True,
        env=git_env(),
        check=True,
    )
    return result.stdout.decode().strip()


def has_main_branch(path: Path) -> bool:
    if not (path / "HEAD").is_file():
        return False
    try:
        _git(path, "rev-parse", "--verify", "--quiet", f"refs/heads/{MAIN_BRANCH}")
    except subprocess.CalledProcessError:
        return False
    return True


def init_bare(path: Path, readme: str) -> None:
    """A bare repository whose ``main`` holds one commit adding a README.

    Written with plumbing commands, so no working tree or clone is needed.
    Idempotent: an existing ``main`` is left alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path / "HEAD").is_file():
        subprocess.run(
            ["git", "init", "--quiet", "--bare", str(path)],
            capture_output=True,
            env=git_env(),
            check=True,
        )
        _git(path, "symbolic-ref", "HEAD", f"refs/heads/{MAIN_BRANCH}")
    if has_main_branch(path):
        return
    blob = _git(path, "hash-object", "-w", "--stdin", stdin=readme.encode())
    tree = _git(path, "mktree", stdin=f"100644 blob {blob}\tREADME.md\n".encode())
    commit = _git(path, "commit-tree", tree, "-m", "Initial commit")
    _git(path, "update-ref", f"refs/heads/{MAIN_BRANCH}", commit)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
