"""Throttling failed sign-ins, with the extension's throttle on ``limits``.

Two budgets of failures, both counted in ``ACCESSTOKENS_RATELIMIT_STORAGE_URI``
(Redis when several workers run), and checked before the password is:

- per client address (``SIGNIN_LIMIT_PER_ADDRESS``, default ``5/minute``),
  counted as the extension counts clients: an IPv4 address, or an IPv6
  ``/64``, with ``::ffff:a.b.c.d`` as ``a.b.c.d``. It stops one machine from
  guessing.
- per username (``SIGNIN_LIMIT_PER_USERNAME``, default ``10/minute``), from
  whatever addresses. It stops many machines from guessing one account.

Over either budget, the answer is ``429`` with ``Retry-After``, whatever the
password: the throttle says nothing about whether it was right, nor whether
the username exists (every name has its budget).

The trade-off: a per-username budget lets a stranger lock someone out by
failing on their name. So its bound is short and the window a minute: the
lock-out ends a minute after the last counted failure, a blocked attempt is
not counted, and a single address, at 5 failures a minute, cannot reach the
10 a minute that lock an account out: it takes several addresses to. Longer
windows would stop slow guessing better and make lock-outs longer; pair
passwords with a second factor rather than tighten these.
"""

from __future__ import annotations

import unicodedata

from flask import current_app
from flask import Flask

from flask_accesstokens.addresses import client_key
from flask_accesstokens.ratelimit import Throttle

#: ``app.extensions`` key of the app's two throttles.
EXTENSION_KEY = "example.signin_throttle"
#: Longest username kept as a key; usernames are at most 64 characters.
MAX_USERNAME_KEY = 64


class SignInThrottle:
    """The two budgets of one app."""

    def __init__(self, app: Flask) -> None:
        storage = app.config["ACCESSTOKENS_RATELIMIT_STORAGE_URI"]
        self.ipv6_prefix = int(app.config["ACCESSTOKENS_RATELIMIT_IPV6_PREFIX"])
        self.per_address = Throttle(
            app.config["SIGNIN_LIMIT_PER_ADDRESS"], storage, "example.signin.address"
        )
        self.per_username = Throttle(
            app.config["SIGNIN_LIMIT_PER_USERNAME"], storage, "example.signin.username"
        )

    @staticmethod
    def of(app: Flask) -> SignInThrottle:
        throttle: SignInThrottle = app.extensions[EXTENSION_KEY]
        return throttle

    def keys(self, username: str, remote_addr: str | None) -> tuple[str, str]:
        name = unicodedata.normalize("NFKC", username).casefold()[:MAX_USERNAME_KEY]
        return client_key(remote_addr, self.ipv6_prefix), name

    def blocked(self, username: str, remote_addr: str | None) -> int | None:
        """None if this sign-in may be tried, else the seconds to wait."""
        address, name = self.keys(username, remote_addr)
        waits = [self.per_address.blocked(address), self.per_username.blocked(name)]
        known = [wait for wait in waits if wait is not None]
        return max(known) if known else None

    def failed(self, username: str, remote_addr: str | None) -> None:
        """Count a failed sign-in against both budgets."""
        address, name = self.keys(username, remote_addr)
        self.per_address.hit(address)
        self.per_username.hit(name)


def init_app(app: Flask) -> None:
    """After the extension's ``init_app``, whose storage settings it shares."""
    app.config.setdefault("SIGNIN_LIMIT_PER_ADDRESS", "5/minute")
    app.config.setdefault("SIGNIN_LIMIT_PER_USERNAME", "10/minute")
    app.extensions[EXTENSION_KEY] = SignInThrottle(app)


def current() -> SignInThrottle:
    return SignInThrottle.of(current_app)
