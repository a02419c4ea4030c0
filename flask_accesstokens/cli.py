"""``flask access-tokens``: manage tokens from a shell, as an operator.

The CLI is not asked ``manager_loader`` (whoever runs it already holds the
app's configuration), but the service keeps every other rule: scopes by
token type, plan gating, resources that exist and the expiry policy. Changes
are recorded as made by ``cli``, or by ``--actor``. Errors exit non-zero with
the message on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from datetime import timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from .config import MAX_ROTATION_GRACE
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .models import AccessToken
from .serialize import isoformat
from .serialize import new_token_json
from .serialize import parse_datetime
from .serialize import token_json
from .service import STATES
from .service import TokenService
from .servicebase import resource_of
from .tokens import NewToken
from .usagecli import routes
from .usagecli import unused
from .usagecli import usage

access_tokens = AppGroup("access-tokens", help="Create, list, revoke and rotate access tokens.")

_actor = click.option(
    "--actor", default="cli", show_default=True, help="Who to record as making the change."
)
_json = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


def _service() -> TokenService:
    return TokenService.of(current_app)


def _get(token_id: str) -> AccessToken:
    token = _service().get(token_id)
    if token is None:
        raise click.ClickException(f"No access token with id {token_id!r}.")
    return token


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _parse_datetime(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _resource_options(command: Any) -> Any:
    command = click.option("--repository", help="Repository slug (a repository token).")(command)
    command = click.option("--project", help="Project key (a project token).")(command)
    return click.option("--workspace", required=True, help="Workspace slug.")(command)


def _check_resource(project: str | None, repository: str | None) -> None:
    if project and repository:
        raise click.UsageError("Give --project or --repository, not both.")


def _describe(token: AccessToken) -> str:
    return str(resource_of(token))


def _echo_secret(secret: str, token: AccessToken, verb: str) -> None:
    click.echo(
        f"{verb} {token.type} access token {token.name!r} ({token.id}) on {_describe(token)}."
    )
    click.echo("")
    click.echo(f"    {secret}")
    click.echo("")
    click.echo("Copy it now: it is shown once and cannot be retrieved again.")


@access_tokens.command()
@_resource_options
@click.option("--name", required=True, help="What the token is for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope; repeat for more.")
@click.option("--expires-at", callback=_parse_datetime, help="ISO 8601 datetime with a timezone.")
@click.option(
    "--allowed-ip",
    "allowed_ips",
    multiple=True,
    help="A network (CIDR) or address the token may be used from; repeat for more."
    " Default: anywhere.",
)
@_actor
@_json
def create(
    workspace: str,
    project: str | None,
    repository: str | None,
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    allowed_ips: tuple[str, ...],
    actor: str,
    as_json: bool,
) -> None:
    """Create a token and print its secret, this once."""
    _created(
        lambda names: _service().create(
            **names,
            name=name,
            scopes=scopes,
            created_by=actor,
            expires_at=expires_at,
            allowed_ips=list(allowed_ips) if allowed_ips else None,
        ),
        {"workspace": workspace, "project": project, "repository": repository},
        "Created",
        as_json,
    )


@access_tokens.command("create-canary")
@_resource_options
@click.option("--name", required=True, help="Where it is planted, so the alarm says where.")
@_actor
@_json
def create_canary(
    workspace: str,
    project: str | None,
    repository: str | None,
    name: str,
    actor: str,
    as_json: bool,
) -> None:
    """Create a canary token (it grants nothing; using it raises an alarm)
    and print its secret, this once."""
    _created(
        lambda names: _service().create_canary(**names, name=name, created_by=actor),
        {"workspace": workspace, "project": project, "repository": repository},
        "Created canary",
        as_json,
    )


def _created(
    make: Callable[[dict[str, Any]], NewToken], names: dict[str, Any], verb: str, as_json: bool
) -> None:
    """Make a token through the service and print it, or exit with why not."""
    _check_resource(names["project"], names["repository"])
    try:
        new = make(names)
    except (UnknownResource, PlanRestriction) as e:
        raise click.ClickException(e.message) from None
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    if as_json:
        _echo_json(new_token_json(new.secret, new.token))
    else:
        _echo_secret(new.secret, new.token, verb)


@access_tokens.command("list")
@_resource_options
@click.option(
    "--all-in-workspace",
    is_flag=True,
    help="Every token in the workspace, of any project or repository in it.",
)
@click.option("--state", type=click.Choice(STATES), help="Only tokens in this state.")
@_json
def list_command(
    workspace: str,
    project: str | None,
    repository: str | None,
    all_in_workspace: bool,
    state: str | None,
    as_json: bool,
) -> None:
    """List tokens, newest first: of one resource, or of a whole workspace."""
    _check_resource(project, repository)
    if all_in_workspace and (project or repository):
        raise click.UsageError("--all-in-workspace lists the whole workspace: drop the others.")
    try:
        found = (
            _service()
            .search(workspace, project, repository, exact=not all_in_workspace, state=state)
            .items
        )
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    if as_json:
        _echo_json([token_json(token) for token in found])
        return
    if not found:
        click.echo("No access tokens.")
        return
    header = (
        "ID",
        "TYPE",
        "RESOURCE",
        "NAME",
        "STATE",
        "SCOPES",
        "CREATED",
        "LAST USED",
        "ALLOWED IPS",
    )
    rows = [header] + [
        (
            t.id,
            t.type,
            _describe(t),
            t.name,
            f"{t.state} (canary)" if t.canary else t.state,
            ",".join(t.scopes),
            _date(t.created_at),
            _date(t.last_used_at) or "never",
            ",".join(t.allowed_networks or ["anywhere"]),
        )
        for t in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _date(value: datetime | None) -> str:
    return (isoformat(value) or "")[:16].replace("T", " ")


@access_tokens.command()
@click.argument("token_id")
@_json
def show(token_id: str, as_json: bool) -> None:
    """Show one token (never its secret)."""
    data = token_json(_get(token_id))
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        if key == "recent_clients":
            continue
        if key == "allowed_ips" and value is None:
            value = "anywhere"
        if isinstance(value, list):
            value = " ".join(value)
        click.echo(f"{key + ':':<14} {'' if value is None else value}")
    click.echo("recent clients:" + ("" if data["recent_clients"] else " none"))
    for seen in data["recent_clients"]:
        agent = seen["user_agent"] or "(no user agent)"
        click.echo(f"  {seen['ip']}  {seen['last_seen']}  {agent}")


@access_tokens.command()
@click.argument("token_id")
@_actor
def revoke(token_id: str, actor: str) -> None:
    """Revoke a token, for every worker, from the next request on."""
    token = _get(token_id)
    if token.revoked_at is not None:
        click.echo(f"Access token {token.id} was already revoked.")
        return
    _service().revoke(token.id, revoked_by=actor)
    click.echo(f"Revoked access token {token.name!r} ({token.id}).")


@access_tokens.command()
@click.argument("token_id")
@click.option(
    "--grace",
    type=click.IntRange(0, int(MAX_ROTATION_GRACE.total_seconds())),
    help="Seconds the old secret keeps working. Default: ACCESSTOKENS_ROTATION_GRACE.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="Narrow the token to this scope; repeat for more. Only scopes it holds.",
)
@_actor
@_json
def rotate(
    token_id: str, grace: int | None, scopes: tuple[str, ...], actor: str, as_json: bool
) -> None:
    """Give a token a new secret, with the same scopes or fewer (--scope),
    and print it once."""
    token = _get(token_id)
    try:
        new = _service().rotate(
            token.id,
            rotated_by=actor,
            grace=None if grace is None else timedelta(seconds=grace),
            scopes=list(scopes) if scopes else None,
        )
    except (TokenConflict, PlanRestriction) as e:
        raise click.ClickException(e.message) from None
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    if new is None:
        raise click.ClickException(f"No access token with id {token_id!r}.")
    if as_json:
        _echo_json(new_token_json(new.secret, new.token))
    else:
        _echo_secret(new.secret, new.token, "Rotated")


@access_tokens.command()
@click.option(
    "--older-than-days",
    type=click.IntRange(min=0),
    required=True,
    help="Delete tokens revoked or expired more than this many days ago.",
)
@click.option(
    "--clients-older-than-days",
    type=click.IntRange(min=1),
    help="Forget client addresses last seen more than this many days ago."
    " Default: ACCESSTOKENS_RECENT_CLIENTS_MAX_AGE.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def prune(older_than_days: int, clients_older_than_days: int | None, dry_run: bool) -> None:
    """Delete long-dead tokens (the audit log keeps their history) and
    forget old client addresses."""
    service = _service()
    try:
        age = timedelta(days=older_than_days)
        clients_age = (
            None if clients_older_than_days is None else timedelta(days=clients_older_than_days)
        )
    except OverflowError:
        raise click.BadParameter("too large") from None
    doomed = service.prune(age, dry_run=dry_run, clients_older_than=clients_age)
    lines = [f"{t.id} {t.state} {t.name!r} ({_describe(t)})" for t in doomed]
    verb = "Would delete" if dry_run else "Deleted"
    for line in lines:
        click.echo(f"{verb} {line}")
    click.echo(f"{verb} {len(lines)} access token{'' if len(lines) == 1 else 's'}.")
    if not dry_run:
        days = (clients_age or service.settings.recent_clients_max_age).days
        click.echo(f"Forgot client addresses last seen more than {days} days ago.")


@access_tokens.command("notify-expiring")
def notify_expiring() -> None:
    """Send the expiry warnings that are due (run it from cron, e.g. daily).
    Each is sent once: running it again sends nothing new."""
    sent = _service().notify_expiring()
    click.echo(f"Sent {sent} expiry notice{'' if sent == 1 else 's'}.")


# Registered here, defined beside the concept they report on.
access_tokens.add_command(routes)
access_tokens.add_command(unused)
access_tokens.add_command(usage)
