"""Bare git repositories on disk, one per repository row: ``GIT_ROOT/<workspace>/<slug>.git``."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

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


class GitCommit(NamedTuple):
    """One commit as ``git log`` reports it: what Bitbucket's commit objects show."""

    hash: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    date: datetime
    message: str


class GitBranch(NamedTuple):
    name: str
    target: GitCommit


# Fields split by NUL and records by an ASCII record separator: neither can
# appear in a name, an e-mail or a date, and a message is the last field.
_LOG_FORMAT = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%B%x1e"


def _read(path: Path, *args: str) -> str:
    """``git`` output, or "" when the repository is missing or the ref unknown:
    a listing of nothing is empty, not an error."""
    if not (path / "HEAD").is_file():
        return ""
    try:
        return _git(path, *args)
    except subprocess.CalledProcessError:
        return ""


def _parse_log(output: str) -> list[GitCommit]:
    commits = []
    for record in output.split("\x1e"):
        record = record.lstrip("\n")
        if not record:
            continue
        sha, parents, name, email, date, message = record.split("\x00", 5)
        message = message.rstrip("\n") + "\n"  # as stored: the output was stripped
        when = datetime.fromisoformat(date)
        commits.append(GitCommit(sha, tuple(parents.split()), name, email, when, message))
    return commits


def branches(path: Path) -> list[GitBranch]:
    """Every branch with its head commit, by name."""
    names = _read(path, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    found = []
    for name in sorted(names):
        head = log(path, [f"refs/heads/{name}"], skip=0, limit=1)
        if head:
            found.append(GitBranch(name, head[0]))
    return found


def branch(path: Path, name: str) -> GitBranch | None:
    head = log(path, [f"refs/heads/{name}"], skip=0, limit=1) if _valid_ref(name) else []
    return GitBranch(name, head[0]) if head else None


def _valid_ref(name: str) -> bool:
    """Refs come from URLs and JSON: never let one be read as an option."""
    return bool(name) and not name.startswith("-") and "\x00" not in name


def log(path: Path, revisions: list[str], *, skip: int, limit: int) -> list[GitCommit]:
    """Commits reachable from ``revisions`` (``^rev`` excludes), newest first."""
    if not revisions or not all(_valid_ref(r.lstrip("^")) for r in revisions):
        return []
    output = _read(
        path,
        "log",
        f"--format={_LOG_FORMAT}",
        f"--skip={skip}",
        f"--max-count={limit}",
        *revisions,
        "--",
    )
    return _parse_log(output)


def count(path: Path, revisions: list[str]) -> int:
    if not revisions or not all(_valid_ref(r.lstrip("^")) for r in revisions):
        return 0
    return int(_read(path, "rev-list", "--count", *revisions, "--") or 0)


def diff(path: Path, base: str, head: str) -> str:
    """What ``head`` adds over its merge base with ``base``, as a unified diff."""
    if not (_valid_ref(base) and _valid_ref(head)):
        return ""
    return _read(path, "diff", f"refs/heads/{base}...refs/heads/{head}", "--")
