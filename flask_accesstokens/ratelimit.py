"""Throttling failed authentication per client address.

Built on ``limits``, the engine of Flask-Limiter: in-memory storage for one
process, Redis or Memcached for many (install the ``ratelimit`` extra for
Redis). Only requests that fail anyway are ever answered 429: a request with
a valid token is never refused because of other requests' failures, so a
shared NAT or a proxy without ProxyFix cannot lock out good clients.

Guessing is hopeless against 256-bit secrets, so the throttle's job is to
keep failure floods cheap (while a client is over budget, its failures cost
no audit row and no log line) and to tell scripts to back off, with
``Retry-After``.

A client is counted as :func:`~.addresses.client_key` makes it: its IPv4
address, or its IPv6 ``/64`` (``ACCESSTOKENS_RATELIMIT_IPV6_PREFIX``), so
neither a host's many IPv6 addresses nor the mapped spelling of an IPv4
address is a fresh budget.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .addresses import client_key
from .addresses import DEFAULT_IPV6_PREFIX

log = logging.getLogger("flask_accesstokens")


class Throttle:
    """``limit`` events per client per window, e.g. ``"10/minute"``."""

    def __init__(
        self,
        limit: str,
        storage_uri: str,
        namespace: str,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.item = parse(limit)
        self.namespace = namespace
        self.ipv6_prefix = ipv6_prefix
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit_client(self, remote_addr: str | None) -> int | None:
        """:meth:`hit` for a client address, counted as its IPv4 address or
        its IPv6 network."""
        return self.hit(client_key(remote_addr, self.ipv6_prefix))

    def hit(self, key: str | None) -> int | None:
        """Count one event of ``key`` as given (an address goes through
        :meth:`hit_client`). None while it is within its budget, else the
        seconds until it may try again. A storage failure counts as within
        budget: the caller's answer is a refusal anyway."""
        key = key or "-"
        try:
            if self.limiter.hit(self.item, self.namespace, key):
                return None
            return self._retry_after(key)
        except Exception as e:  # noqa: BLE001 - any storage failure
            log.error("rate limit storage failed: %s", type(e).__name__)
            return None

    def blocked(self, key: str) -> int | None:
        """Without counting: None while ``key`` may still make an event, else
        the seconds until it may. A storage failure counts as not blocked."""
        try:
            if self.limiter.test(self.item, self.namespace, key):
                return None
            return self._retry_after(key)
        except Exception as e:  # noqa: BLE001 - any storage failure
            log.error("rate limit storage failed: %s", type(e).__name__)
            return None

    def _retry_after(self, key: str) -> int:
        reset = self.limiter.get_window_stats(self.item, self.namespace, key).reset_time
        return max(1, math.ceil(reset - time.time()))
