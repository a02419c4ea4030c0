"""``flask access-tokens routes``, ``usage`` and ``unused``: least privilege
from the shell. ``routes`` shows what each scope opens before a token is
made; ``usage`` and ``unused`` show what tokens never needed, from the use
the request path recorded. ``cli.py`` adds them to the group."""

from __future__ import annotations

import json
from datetime import datetime
from datetime import timedelta

import click
from flask import current_app

from .leastprivilege import binding_of
from .requirements import protected_routes
from .service import TokenService
from .servicebase import resource_of


def _service() -> TokenService:
    return TokenService.of(current_app)


def _date(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def routes(as_json: bool) -> None:
    """List every protected route with its methods, scopes and binding, as
    its decorator declares them."""
    found = list(protected_routes(current_app))
    if as_json:
        rows = [
            {
                "rule": r.rule,
                "endpoint": r.endpoint,
                "methods": list(r.methods),
                "scopes": list(r.requirement.scopes),
                "any_of": r.requirement.any_of,
                "binding": binding_of(r),
                "optional": r.requirement.optional,
            }
            for r in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("No protected routes.")
        return
    for r in found:
        joiner = " or " if r.requirement.any_of else " and "
        optional = " (token optional)" if r.requirement.optional else ""
        click.echo(
            f"{','.join(r.methods):<12} {r.rule}  scopes: {joiner.join(r.requirement.scopes)}"
            f"  binding: {binding_of(r)}{optional}"
        )


@click.command()
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def usage(token_id: str, as_json: bool) -> None:
    """Which scopes a token needed, which resources it used, and what it
    never needed."""
    found = _service().usage(token_id)
    if found is None:
        raise click.ClickException(f"No access token with id {token_id!r}.")
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    click.echo(f"Tracked since {_date(found.since)}.")
    for scope in found.scopes:
        click.echo(f"  {scope.scope:<24} last needed: {_date(scope.last_needed)}")
    for resource in found.resources:
        names = "/".join(resource.resource.values())
        click.echo(f"  used {names}  last: {_date(resource.last_used)}")
    if found.remove_scopes:
        click.echo(f"Never needed: {', '.join(found.remove_scopes)}.")
        kept = " ".join(f"--scope {s}" for s in found.used_scopes)
        if kept:
            click.echo(f"Narrow it: flask access-tokens rotate {token_id} {kept}")


@click.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    required=True,
    help="Scopes that served no request for this many days.",
)
@click.option(
    "--notify",
    is_flag=True,
    help="Also send token_overprivileged, once per token and set of unused scopes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def unused(days: int, notify: bool, as_json: bool) -> None:
    """List active tokens with scopes unused for --days days (tokens tracked
    for less than that are left out, and so are canaries)."""
    service = _service()
    period = timedelta(days=days)
    found = service.unused(period)
    if as_json:
        rows = [{"id": f.token.id, "name": f.token.name, "unused": list(f.unused)} for f in found]
        click.echo(json.dumps(rows, indent=2))
    else:
        for f in found:
            click.echo(
                f"{f.token.id}  {f.token.name!r} on {resource_of(f.token)}:"
                f" unused {', '.join(f.unused)}"
            )
        count = len(found)
        click.echo(
            f"{count} access token{'' if count == 1 else 's'} with scopes unused for {days} days."
        )
    if notify:
        sent = service.notify_overprivileged(period)
        click.echo(f"Sent {sent} notice{'' if sent == 1 else 's'}.", err=as_json)
