"""Strings the extension derives and stores, cut to fit their columns.

A token's name may be 255 characters, so ``name + " (access token)"`` does
not fit the 255-character ``revoked_by`` or audit ``actor`` column; a client
address comes from ``request.remote_addr``, which behind ``ProxyFix`` is
whatever ``X-Forwarded-For`` said. On PostgreSQL (and any database that
enforces lengths) an overlong value fails the whole write: a token could not
retire itself, and a reused secret or a public revocation from a long
"address" would not revoke. Every such value is cut here, on its way in,
rather than trusted to fit.
"""

from __future__ import annotations

#: The length of ``revoked_by``, ``created_by`` and the audit ``actor``.
ACTOR_MAX_LENGTH = 255
#: The length of the audit ``client`` and of ``last_used_ip``.
CLIENT_MAX_LENGTH = 64
#: The length of a leak's provider: a secret-scanning provider's name
#: (``ACCESSTOKENS_SECRET_SCANNING_KEYS`` refuses longer ones) or ``public``.
LEAK_PROVIDER_MAX_LENGTH = 32
#: How a token is named as the author of a change, after its name, as
#: Bitbucket names it.
TOKEN_ACTOR_SUFFIX = " (access token)"
#: Marks a name cut short, so a cut actor is not mistaken for the whole name.
ELLIPSIS = "…"


def token_actor(name: str) -> str:
    """``"<name> (access token)"``, the name cut (and marked) so the whole
    fits :data:`ACTOR_MAX_LENGTH`."""
    room = ACTOR_MAX_LENGTH - len(TOKEN_ACTOR_SUFFIX)
    if len(name) > room:
        name = name[: room - len(ELLIPSIS)] + ELLIPSIS
    return name + TOKEN_ACTOR_SUFFIX


def fit(value: str | None, length: int) -> str | None:
    """``value`` cut to ``length`` characters; None stays None."""
    if value is None or len(value) <= length:
        return value
    return value[:length]


def actor(value: str | None) -> str | None:
    """An actor (who made a change) as an actor column holds it."""
    return fit(value, ACTOR_MAX_LENGTH)


def client(value: str | None) -> str | None:
    """A client address as a client column holds it."""
    return fit(value, CLIENT_MAX_LENGTH)
