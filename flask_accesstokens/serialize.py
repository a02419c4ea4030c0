"""A token record as JSON, the same for the API, the admin pages and the CLI.

The secret is never part of it: only the responses that create a secret add
it, under ``"token"``, next to this object.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone
from typing import Any

from .models import AccessToken


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as Bitbucket writes datetimes."""
    if value is None:
        return None
    if value.tzinfo is None:  # the store hands out aware datetimes; be safe anyway
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def token_json(token: AccessToken) -> dict[str, Any]:
    """The public view of a token record.

    .. versionadded:: 0.1
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
    }


def new_token_json(secret: str, token: AccessToken) -> dict[str, Any]:
    """The answer to a create or rotate: the record plus the secret, once."""
    return {**token_json(token), "token": secret}
