"""``flask access-tokens trust-policies``: add, list and delete the trust
policies of the OIDC exchange, as an operator (no ``manager_loader``, as
for the rest of the CLI; the service keeps every other rule)."""

from __future__ import annotations

import json
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from .cli import access_tokens
from .cli import resource_named
from .cli import resource_options
from .errors import PlanRestriction
from .errors import TokenValidationError
from .errors import UnknownResource
from .serialize import policy_json
from .service import TokenService
from .trustpolicy import DEFAULT_LIFETIME
from .trustpolicy import MAX_LIFETIME

trust_policies = AppGroup(
    "trust-policies", help="Trust policies: CI jobs that exchange OIDC ID tokens for tokens."
)
access_tokens.add_command(trust_policies)


def _service() -> TokenService:
    return TokenService.of(current_app)


def _parse_claims(_ctx: object, _param: object, value: tuple[str, ...]) -> dict[str, str]:
    claims: dict[str, str] = {}
    for item in value:
        name, sep, claim = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write NAME=VALUE")
        claims[name] = claim
    return claims


@trust_policies.command("create")
@click.option("--issuer", required=True, help="A name of ACCESSTOKENS_OIDC_ISSUERS.")
@click.option(
    "--claim",
    "claims",
    multiple=True,
    required=True,
    callback=_parse_claims,
    help="NAME=VALUE the ID token must carry; repeat for more.",
)
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope; repeat for more.")
@click.option(
    "--lifetime",
    type=click.IntRange(1, int(MAX_LIFETIME.total_seconds() // 60)),
    default=int(DEFAULT_LIFETIME.total_seconds() // 60),
    show_default=True,
    help="Minutes a minted token lives.",
)
@click.option("--actor", default="cli", show_default=True, help="Who to record as adding it.")
@resource_options
def create(
    issuer: str,
    claims: dict[str, str],
    scopes: tuple[str, ...],
    lifetime: int,
    actor: str,
    **names: str | None,
) -> None:
    """Add a trust policy and print it as JSON."""
    try:
        policy = _service().create_trust_policy(
            resource=resource_named(names),
            issuer=issuer,
            claims=claims,
            scopes=list(scopes),
            lifetime=timedelta(minutes=lifetime),
            created_by=actor,
        )
    except (UnknownResource, PlanRestriction) as e:
        raise click.ClickException(e.message) from None
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    click.echo(json.dumps(policy_json(policy), indent=2))


@trust_policies.command("list")
@resource_options
def list_command(**names: str | None) -> None:
    """The trust policies of one resource as JSON, newest first."""
    try:
        policies = _service().list_trust_policies(resource_named(names))
    except TokenValidationError as e:
        raise click.ClickException(f"{e.field}: {e.message}") from None
    click.echo(json.dumps([policy_json(p) for p in policies], indent=2))


@trust_policies.command("delete")
@click.argument("policy_id")
@click.option("--actor", default="cli", show_default=True, help="Who to record as removing it.")
def delete(policy_id: str, actor: str) -> None:
    """Delete a trust policy and revoke the live tokens it minted."""
    if not _service().delete_trust_policy(policy_id, deleted_by=actor):
        raise click.ClickException(f"No trust policy with id {policy_id!r}.")
    click.echo(f"Deleted trust policy {policy_id}; its live tokens are revoked.")
