"""``python -m examples.saas``: seed an organization with projects and
items, mint two tokens, print them with curl lines to try, and serve on
127.0.0.1. The story is data (:func:`story`), so the printed lines and the
test that replays them cannot drift apart."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.security import generate_password_hash
from werkzeug.serving import run_simple

from flask_accesstokens import NewToken

from .access import tokens
from .models import db
from .models import Item
from .models import Member
from .models import Organization
from .models import Project
from .models import Template

HOST = "127.0.0.1"
PASSWORD = "demo"


def seed() -> None:
    """The demo's data, once: organization 7 (Acme) with projects 42 and 43,
    organization 8 (Globex) with project 50. Integer ids, as in most apps;
    items and templates take theirs from the database, 1 to 4 in order."""
    if db.session.get(Organization, 7) is not None:
        return
    db.session.add_all([Organization(id=7, name="Acme"), Organization(id=8, name="Globex")])
    db.session.flush()  # parents first: the tables have no relationship() to order them
    db.session.add_all(
        [
            Project(id=42, org_id=7, name="Website"),
            Project(id=43, org_id=7, name="Mobile"),
            Project(id=50, org_id=8, name="Billing"),
        ]
    )
    db.session.flush()
    db.session.add_all(
        [
            Item(project_id=42, title="Homepage copy"),
            Item(project_id=42, title="Pricing page"),
            Item(project_id=43, title="Push notifications"),
            Item(project_id=50, title="Invoices"),
            Template(title="Bug report"),
            Template(title="Feature request"),
        ]
    )
    password = generate_password_hash(PASSWORD)
    db.session.add_all(
        [
            Member(name="alice", org_id=7, password_hash=password, admin=True),
            Member(name="bob", org_id=7, password_hash=password, admin=False),
            Member(name="carol", org_id=8, password_hash=password, admin=True),
        ]
    )
    db.session.commit()


@dataclass(frozen=True)
class DemoTokens:
    project: NewToken
    organization: NewToken


def create_demo_tokens() -> DemoTokens:
    """Fresh tokens each run, named by the time."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return DemoTokens(
        project=tokens.create_token(
            name=f"Website CI {stamp}",
            resource={"organization": 7, "project": 42},
            scopes=["items:write", "templates:read"],
            created_by="alice",
        ),
        organization=tokens.create_token(
            name=f"Acme admin {stamp}",
            resource={"organization": 7},
            scopes=["projects:admin"],
            created_by="alice",
        ),
    )


@dataclass(frozen=True)
class Step:
    """One request of the story and the status it answers."""

    explanation: str
    token: str
    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None


def story(demo: DemoTokens) -> list[Step]:
    project, organization = demo.project.secret, demo.organization.secret
    return [
        Step("200: the project token lists its project's items", project, "GET",
             "/organizations/7/projects/42/items", 200),
        Step("403: ...not another project's", project, "GET",
             "/organizations/7/projects/43/items", 403),
        Step("201: it adds an item", project, "POST",
             "/organizations/7/projects/42/items", 201, {"title": "Launch post"}),
        Step("200: a flat URL, placed by the resolver", project, "GET", "/items/1", 200),
        Step("403: ...an item of another project", project, "GET", "/items/3", 403),
        Step("200: the listing shows only the token's project", project, "GET",
             "/organizations/7/projects", 200),
        Step("200: templates belong to no project: scope only", project, "GET",
             "/templates", 200),
        Step("200: the organization token sees every project", organization, "GET",
             "/organizations/7/projects", 200),
        Step("403: ...but not another organization's", organization, "GET",
             "/organizations/8/projects/50/items", 403),
    ]  # fmt: skip


def curl(base_url: str, step: Step) -> str:
    parts = ["curl", "-i", "-H", f"Authorization: Bearer {step.token}"]
    if step.method != "GET":
        parts[2:2] = ["-X", step.method]
    if step.body is not None:
        parts += ["-H", "Content-Type: application/json", "-d", json.dumps(step.body)]
    return f"# {step.explanation}\n{shlex.join([*parts, base_url + step.path])}"


def instructions(base_url: str, demo: DemoTokens) -> str:
    lines = [
        f"Sign in at {base_url}/ as alice/{PASSWORD} (an admin of Acme) to manage tokens,",
        f"e.g. at {base_url}/settings/organizations/7/projects/42/access-tokens",
        "",
        "Tokens (shown once; stored only as digests):",
        f"  project 42 in organization 7   {demo.project.secret}",
        f"      scopes {' '.join(demo.project.token.scopes)}",
        f"  organization 7                 {demo.organization.secret}",
        f"      scopes {' '.join(demo.organization.token.scopes)}",
        "",
        *(curl(base_url, step) + "\n" for step in story(demo)),
    ]
    return "\n".join(lines)


@click.command("seed")
@with_appcontext
def seed_command() -> None:
    """Add the demo's organizations, projects, items and members."""
    seed()
    click.echo("Seeded organizations 7 and 8.")


@click.command("demo")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@with_appcontext
def demo_command(port: int) -> None:
    """Seed, mint a project and an organization token, print how to try
    them, and serve on 127.0.0.1."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    seed()
    demo = create_demo_tokens()
    click.echo(instructions(f"http://{HOST}:{port}", demo), nl=True)
    run_simple(HOST, port, app, threaded=True)
