"""Tokens and datetimes to and from text, the same for the API, the admin
pages and the CLI.

The secret is never part of a token's JSON: only the responses that create a
secret add it, under ``"token"``, next to this object.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone
from typing import Any

from .models import AccessToken
from .trustmodels import TrustPolicy


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as Bitbucket writes datetimes."""
    if value is None:
        return None
    if value.tzinfo is None:  # the store hands out aware datetimes; be safe anyway
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 datetime with a timezone, as aware UTC. ``ValueError`` says
    what is wrong. Naive datetimes are refused rather than guessed at."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 datetime string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 datetime, e.g. 2030-01-31T12:00:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must include a timezone, e.g. 'Z' or '+02:00'")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range") from None


def token_json(token: AccessToken) -> dict[str, Any]:
    """The public view of a token record.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``canary``, ``leak_provider`` and ``leak_url``.
    .. versionchanged:: 0.3
        ``policy_id``: the trust policy that minted it in an OIDC exchange.
    """
    return {
        "id": token.id,
        "name": token.name,
        "type": token.type,
        "workspace": token.workspace,
        "project": token.project,
        "repository": token.repository,
        "scopes": list(token.scopes),
        "state": token.state,
        "hint": token.hint,
        "created_at": isoformat(token.created_at),
        "created_by": token.created_by,
        "last_used_at": isoformat(token.last_used_at),
        "last_used_ip": token.last_used_ip,
        "revoked_at": isoformat(token.revoked_at),
        "revoked_by": token.revoked_by,
        "expires_at": isoformat(token.expires_at),
        "rotated_at": isoformat(token.rotated_at),
        "allowed_ips": token.allowed_networks,
        "recent_clients": token.recent_clients,
        "canary": bool(token.canary),
        "leak_provider": token.leak_provider,
        "leak_url": token.leak_url,
        "policy_id": token.policy_id,
    }


def new_token_json(secret: str, token: AccessToken) -> dict[str, Any]:
    """The answer to a create or rotate: the record plus the secret, once."""
    return {**token_json(token), "token": secret}


def policy_json(policy: TrustPolicy) -> dict[str, Any]:
    """The public view of a trust policy.

    .. versionadded:: 0.3
    """
    resource = {"workspace": policy.workspace}
    if policy.type == "project" and policy.project is not None:
        resource["project"] = policy.project
    if policy.repository is not None:
        resource["repository"] = policy.repository
    return {
        "id": policy.id,
        "type": policy.type,
        "resource": resource,
        "workspace": policy.workspace,
        "project": policy.project,
        "repository": policy.repository,
        "issuer": policy.issuer,
        "claims": policy.claims,
        "scopes": list(policy.scopes),
        "lifetime": policy.lifetime_seconds,
        "created_at": isoformat(policy.created_at),
        "created_by": policy.created_by,
    }
