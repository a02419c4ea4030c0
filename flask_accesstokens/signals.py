"""Signals, in their own :class:`blinker.Namespace`.

Each is sent with the app as sender. Receivers get token records or
identities, never a secret.
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
