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
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger("flask_accesstokens")


class Throttle:
    """``limit`` events per client per window, e.g. ``"10/minute"``."""

    def __init__(self, limit: str, storage_uri: str, namespace: str) -> None:
        self.item = parse(limit)
        self.namespace = namespace
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, client: str | None) -> int | None:
        """Count one event. None while the client is within its budget, else
        the seconds until it may try again. A storage failure counts as
        within budget: the caller's answer is a refusal anyway."""
        key = client or "-"
        try:
            if self.limiter.hit(self.item, self.namespace, key):
                return None
            reset = self.limiter.get_window_stats(self.item, self.namespace, key).reset_time
        except Exception as e:  # noqa: BLE001 - any storage failure
            log.error("rate limit storage failed: %s", type(e).__name__)
            return None
        return max(1, math.ceil(reset - time.time()))
