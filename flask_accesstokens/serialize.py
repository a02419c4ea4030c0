"""Tokens and datetimes to and from text, the same for the API, the admin
pages and the CLI.

The secret is never part of a token's JSON: only the responses that create a
secret add it, under ``"token"``, next to this object.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
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


def token_json(token: AccessToken, bitbucket: bool = True) -> dict[str, Any]:
    """The public view of a token record. ``resource`` names what it is
    bound to; the Bitbucket model's objects keep ``workspace``, ``project``
    and ``repository`` too (``bitbucket``), other models' mention none.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        ``canary``, ``leak_provider``, ``leak_url`` and ``resource``.
    """
    names: dict[str, Any] = {"resource": token.resource}
    if bitbucket:
        names = {
            "workspace": token.workspace,
            "project": token.project,
            "repository": token.repository,
            **names,
        }
    return {
        "id": token.id,
        "name": token.name,
        "type": token.type,
        **names,
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


#: What ``self`` answers, in this order: what a job needs to know about its
#: own token. Whoever holds a token may not be its owner, so nothing about its
#: other uses or its owners (recent clients, addresses, allow list, creator,
#: leak details) is among them: those stay on the management API.
SELF_FIELDS = (
    "id",
    "name",
    "type",
    "resource",
    "workspace",
    "project",
    "repository",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
)


def self_json(token: AccessToken, granted: Iterable[str], bitbucket: bool = True) -> dict[str, Any]:
    """The answer of ``GET self``: :data:`SELF_FIELDS` of the record, its
    ``resource`` where the record has one, and ``granted``, every scope it
    holds, implied ones included.

    .. versionadded:: 0.3
    """
    public = token_json(token, bitbucket)
    resource = getattr(token, "resource", None)
    if "resource" not in public and isinstance(resource, Mapping):
        public["resource"] = dict(resource)
    answer = {name: public[name] for name in SELF_FIELDS if name in public}
    answer["granted"] = sorted(granted)
    return answer


def new_token_json(secret: str, token: AccessToken, bitbucket: bool = True) -> dict[str, Any]:
    """The answer to a create or rotate: the record plus the secret, once."""
    return {**token_json(token, bitbucket), "token": secret}


def policy_json(policy: TrustPolicy) -> dict[str, Any]:
    """The public view of a trust policy.

    .. versionadded:: 0.3
    """
    return {
        "id": policy.id,
        "type": policy.type,
        "resource": policy.resource,
        "issuer": policy.issuer,
        "claims": policy.claims,
        "scopes": list(policy.scopes),
        "lifetime": policy.lifetime_seconds,
        "created_at": isoformat(policy.created_at),
        "created_by": policy.created_by,
    }
