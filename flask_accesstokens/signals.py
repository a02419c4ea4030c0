"""Signals, in their own :class:`blinker.Namespace`.

Each is sent with the app as sender. Receivers get token records or
identities, never a secret. The extension sends these objects directly, so a
misspelt signal is an import error, not a silent no-op.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A token was created: ``token`` (the record), ``actor``.
token_created = _signals.signal("token-created")
#: A token was revoked: ``token``, ``actor``.
token_revoked = _signals.signal("token-revoked")
#: A token got a new secret: ``token``, ``actor``, ``grace_until``.
token_rotated = _signals.signal("token-rotated")
#: A request was authenticated: ``token`` (an :class:`AuthenticatedToken`).
token_authenticated = _signals.signal("token-authenticated")
#: A request was refused: ``reason``, ``token_id`` (None when unknown), ``client``.
token_rejected = _signals.signal("token-rejected")
#: A rotated-out secret was presented after its grace window: ``token_id``,
#: ``client``, ``revoked`` (whether the token was revoked because of it).
token_reused = _signals.signal("token-reused")
#: A token's expiry is near: ``token`` (the record), ``days_left`` (the
#: threshold from ``ACCESSTOKENS_EXPIRY_WARNINGS`` that was crossed).
token_expiring = _signals.signal("token-expiring")
#: A token expired: ``token``. Sent once, by ``notify_expiring()``.
token_expired = _signals.signal("token-expired")
#: A canary token was presented: ``token`` (the record), ``client`` (the
#: address, or the provider that reported it).
canary_tripped = _signals.signal("canary-tripped")
#: A token was reported leaked and revoked: ``token``, ``provider``
#: (``"public"`` for public revocation), ``url`` (where it was found, or None).
token_leaked = _signals.signal("token-leaked")
#: A token holds scopes it did not need for a period: ``token`` (the
#: record), ``unused`` (the scope names). Sent by ``notify_overprivileged()``
#: once per token and set of unused scopes.
token_overprivileged = _signals.signal("token-overprivileged")
