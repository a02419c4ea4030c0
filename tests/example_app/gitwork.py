"""Writing commits straight into the app's bare repositories, as a push would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from flask import Flask

from example_app.gitrepos import git_env
from example_app.gitrepos import repository_path


def _git(path: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(path), *args],
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        env=git_env(),
        check=True,
    )
    return result.stdout.decode().strip()


def commit_on(app: Flask, workspace: str, slug: str, branch: str, *, start: str = "main",
              files: dict[str, str], message: str) -> str:  # fmt: skip
    """A commit adding ``files`` on top of ``branch`` (created from ``start``); its hash."""
    with app.app_context():
        path = repository_path(workspace, slug)
    try:
        parent = _git(path, "rev-parse", "--verify", f"refs/heads/{branch}")
    except subprocess.CalledProcessError:
        parent = _git(path, "rev-parse", "--verify", f"refs/heads/{start}")
    entries = _git(path, "ls-tree", parent) + "\n"
    for name, text in files.items():
        blob = _git(path, "hash-object", "-w", "--stdin", stdin=text)
        entries += f"100644 blob {blob}\t{name}\n"
    tree = _git(path, "mktree", stdin=entries)
    commit = _git(path, "commit-tree", tree, "-p", parent, "-m", message)
    _git(path, "update-ref", f"refs/heads/{branch}", commit)
    return commit
