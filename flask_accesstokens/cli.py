"""``flask access-tokens``: manage tokens from a shell, as an operator.

The CLI is not asked ``manager_loader`` (whoever runs it already holds the
app's configuration), but the service keeps every other rule: scopes by
token type, plan gating, resources that exist and the expiry policy. Changes
are recorded as made by ``cli``, or by ``--actor``. Errors exit non-zero with
the message on stderr.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import timezone
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from . import words
from .config import MAX_ROTATION_GRACE
from .errors import PlanRestriction
from .errors import TokenConflict
from .errors import TokenValidationError
from .errors import UnknownResource
from .models import AccessToken
from .resources import Resource
from .resources import ResourceModel
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


def _bitbucket() -> bool:
    return _service().model.is_bitbucket()


def _get(token_id: str) -> AccessToken:
    token = _service().get(token_id)
    if token is None:
        raise click.ClickException(f"No access token with id {token_id!r}.")
    return token


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _parse_datetime(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    """An ISO 8601 datetime with a timezone, or a date: 00:00 UTC that day,
    as the admin form's date field means it."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(), tzinfo=timezone.utc)
    try:
        return parse_datetime(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


#: Marks a command that takes one option per level of the app's model.
_LEVELS = "_accesstokens_levels"


def resource_options(callback: Any) -> Any:
    """The command names a resource with one option per level (``--workspace
    acme --repository api``), added for each app's model by :func:`for_model`."""
    setattr(callback, _LEVELS, True)
    return callback


def for_model(model: ResourceModel, group: click.Group | None = None) -> AppGroup:
    """The ``access-tokens`` commands for one app: those that name a
    resource get one option per level of its model, in its words."""
    group = group or access_tokens
    made = AppGroup(group.name, help=group.help)
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            command = for_model(model, command)
        elif getattr(command.callback, _LEVELS, False):
            command = copy.copy(command)
            command.params = [
                click.Option(
                    [f"--{level.name.replace('_', '-')}", level.name],
                    help=f"{level.label} name"
                    + (" (the top level)." if i == 0 else f" (a {level.label.lower()} token)."),
                )
                for i, level in enumerate(model.levels)
            ] + [_in_words(param, model) for param in command.params]
        made.add_command(command, name)
    return made


def _in_words(param: click.Parameter, model: ResourceModel) -> click.Parameter:
    """A parameter as this model names it: Bitbucket's ``--all-in-workspace``
    alias only in Bitbucket's model."""
    if model.is_bitbucket() or "--all-in-workspace" not in param.opts:
        return param
    param = copy.copy(param)
    param.opts = [opt for opt in param.opts if opt != "--all-in-workspace"]
    return param


def resource_named(names: dict[str, Any]) -> Resource:
    """The resource the level options name, or exit saying which is wrong."""
    try:
        return _service().model.resource({k: v for k, v in names.items() if v is not None})
    except TokenValidationError as e:
        model = _service().model
        field = e.field if e.field in model.names else model.levels[0].name
        raise click.UsageError(f"--{field.replace('_', '-')}: {e.message}") from None


def _describe(token: AccessToken) -> str:
    return words.describe(_service().model, resource_of(token))


def _echo_secret(secret: str, token: AccessToken, verb: str) -> None:
    click.echo(
        f"{verb} {token.type} access token {token.name!r} ({token.id}) on {_describe(token)}."
    )
    click.echo("")
    click.echo(f"    {secret}")
    click.echo("")
    click.echo("Copy it now: it is shown once and cannot be retrieved again.")


@access_tokens.command()
@resource_options
@click.option("--name", required=True, help="What the token is for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope; repeat for more.")
@click.option(
    "--expires-at",
    callback=_parse_datetime,
    help="A date (2030-01-31: 00:00 UTC that day) or an ISO 8601 datetime with a timezone.",
)
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
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    allowed_ips: tuple[str, ...],
    actor: str,
    as_json: bool,
    **names: str | None,
) -> None:
    """Create a token and print its secret, this once."""
    _created(
        lambda resource: _service().create(
            resource=resource,
            name=name,
            scopes=scopes,
            created_by=actor,
            expires_at=expires_at,
            allowed_ips=list(allowed_ips) if allowed_ips else None,
        ),
        names,
        "Created",
        as_json,
    )


@access_tokens.command("create-canary")
@resource_options
@click.option("--name", required=True, help="Where it is planted, so the alarm says where.")
@_actor
@_json
def create_canary(name: str, actor: str, as_json: bool, **names: str | None) -> None:
    """Create a canary token (it grants nothing; using it raises an alarm)
    and print its secret, this once."""
    _created(
        lambda resource: _service().create_canary(resource=resource, name=name, created_by=actor),
        names,
        "Created canary",
        as_json,
    )


def _created(
    make: Callable[[Resource], NewToken], names: dict[str, Any], verb: str, as_json: bool
) -> None:
    """Make a token through the service and print it, or exit with why not."""
    resource = resource_named(names)
    try:
        new = make(resource)
    except (UnknownResource, PlanRestriction) as e:
        raise click.ClickException(e.message) from None
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    if as_json:
        _echo_json(new_token_json(new.secret, new.token, _bitbucket()))
    else:
        _echo_secret(new.secret, new.token, verb)


@access_tokens.command("list")
@resource_options
@click.option(
    "--all",
    "--all-in-workspace",
    "subtree",
    is_flag=True,
    help="Also the tokens of everything inside the resource.",
)
@click.option("--state", type=click.Choice(STATES), help="Only tokens in this state.")
@_json
def list_command(subtree: bool, state: str | None, as_json: bool, **names: str | None) -> None:
    """List tokens, newest first: of one resource, or (--all) of it and
    everything inside it."""
    resource = resource_named(names)
    try:
        found = _service().search(resource, exact=not subtree, state=state).items
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    if as_json:
        _echo_json([token_json(token, _bitbucket()) for token in found])
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
    data = token_json(_get(token_id), _bitbucket())
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
@click.argument("token_id", required=False)
@_actor
@resource_options
def revoke(token_id: str | None, actor: str, **names: str | None) -> None:
    """Revoke a token (TOKEN_ID), or every token of a resource and of
    everything inside it (the level options), for every worker, from the
    next request on."""
    given = {k: v for k, v in names.items() if v is not None}
    if token_id is not None and given:
        raise click.UsageError("Give a TOKEN_ID or a resource, not both.")
    if token_id is None:
        if not given:
            raise click.UsageError("Give a TOKEN_ID, or a resource to revoke all of its tokens.")
        resource = resource_named(given)
        count = _service().revoke_resource(resource, revoked_by=actor)
        where = words.describe(_service().model, resource)
        click.echo(f"Revoked {count} access token{'' if count == 1 else 's'} of {where}.")
        return
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
        _echo_json(new_token_json(new.secret, new.token, _bitbucket()))
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
