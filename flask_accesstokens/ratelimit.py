"""Throttling failed authentication per client address.

Built on ``limits``, the engine of Flask-Limiter (install the ``ratelimit``
extra): in-memory storage for one process, Redis or Memcached for many hosts.
Only failures count, so a client with a valid token is never slowed down by
someone else's guessing; a client over its budget gets 429 with
``Retry-After`` until the window passes, whatever it presents.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from .errors import StorageUnavailable
from .errors import TooManyFailures

log = logging.getLogger("flask_accesstokens")


class FailureThrottle:
    """``limit`` failed attempts per client per window, e.g. ``"10/minute"``."""

    def __init__(self, limit: str, storage_uri: str = "memory://") -> None:
        try:
            from limits import parse
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter
        except ImportError:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "ACCESSTOKENS_RATELIMIT needs the 'ratelimit' extra:"
                " pip install 'Flask-AccessTokens[ratelimit]'"
            ) from None
        self.item = parse(limit)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def check(self, client: str | None) -> None:
        """Refuse a client that used up its failures, before any lookup."""
        key = client or "-"
        try:
            if self.limiter.test(self.item, "accesstokens", key):
                return
            reset = self.limiter.get_window_stats(self.item, "accesstokens", key).reset_time
        except Exception as e:  # noqa: BLE001 - any storage failure
            log.error("rate limit storage failed: %s", type(e).__name__)
            raise StorageUnavailable() from None
        retry_after = max(1, math.ceil(reset - time.time()))
        raise TooManyFailures(headers={"Retry-After": str(retry_after)})

    def failed(self, client: str | None) -> None:
        try:
            self.limiter.hit(self.item, "accesstokens", client or "-")
        except Exception as e:  # noqa: BLE001 - counting must not fail the answer
            log.error("rate limit storage failed: %s", type(e).__name__)


def from_config(config: Any) -> FailureThrottle | None:
    limit = config.get("ACCESSTOKENS_RATELIMIT")
    if not limit:
        return None
    return FailureThrottle(limit, config.get("ACCESSTOKENS_RATELIMIT_STORAGE_URI", "memory://"))
