"""The token string: making a secret, recognising one, and its keyed digest.

A token looks like ``bbat_<43 random base62 chars><6 char checksum>``:

- the prefix lets secret scanners and people recognise a leaked token;
- 43 base62 characters from :mod:`secrets` carry 256 bits;
- the CRC32 checksum (as GitHub's tokens have) rejects typos and garbage
  before any database query. It is not a security feature: the digest is.

Only an HMAC-SHA-256 digest under a server-side key is stored. The key is
derived from ``SECRET_KEY`` with itsdangerous, and old keys still verify, so
rotating ``SECRET_KEY`` (with ``SECRET_KEY_FALLBACKS``) does not break tokens.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import zlib
from collections.abc import Iterable

from itsdangerous import Signer

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
HINT_LENGTH = 4
_DIGEST_SALT = "flask-accesstokens.digest"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{1,15}")


#: Every pair of base62 digits, so a checksum takes three steps, not six.
_PAIRS = [a + b for a in BASE62 for b in BASE62]


def _checksum(body: str) -> str:
    high, low = divmod(zlib.crc32(body.encode("ascii")), 62**4)
    middle, low = divmod(low, 62**2)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def check_prefix(prefix: str) -> str:
    """Prefixes are short lowercase identifiers, so the token stays one word."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"ACCESSTOKENS_TOKEN_PREFIX {prefix!r} must be 2-16 lowercase letters or digits"
        )
    return prefix


def generate(prefix: str) -> str:
    """A new token string: prefix, 256 random bits, checksum."""
    body = f"{prefix}_" + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + _checksum(body)


@functools.lru_cache(maxsize=8)
def _shape(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{prefix}_[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}")


def is_well_formed(token: str, prefix: str) -> bool:
    """Shape and checksum only; says nothing about whether the token exists.

    Runs before any database query, so a typo or a scanner's probe never costs
    a lookup. Its timing depends only on public information (the shape).
    """
    if _shape(prefix).fullmatch(token) is None:
        return False
    body, checksum = token[:-CHECKSUM_LENGTH], token[-CHECKSUM_LENGTH:]
    return hmac.compare_digest(_checksum(body), checksum)


def new_id() -> str:
    """A public, unguessable record id: it names a token, it does not unlock it."""
    return secrets.token_hex(16)


def is_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def hint(token: str) -> str:
    """The last characters, so a UI can tell tokens apart. Not enough to
    recover anything."""
    return token[-HINT_LENGTH:]


class Digester:
    """Keyed digests of tokens, under the current key and any older ones."""

    def __init__(self, secret_keys: Iterable[str | bytes]) -> None:
        keys = [k for k in secret_keys if k]
        if not keys:
            raise RuntimeError(
                "flask-accesstokens needs SECRET_KEY (or ACCESSTOKENS_DIGEST_KEYS) to digest tokens"
            )
        # Newest first: new tokens use keys[0]; the rest only verify. Each key
        # is set up once; copying a keyed HMAC skips the key schedule per call.
        self._hmacs = [
            hmac.new(
                Signer(key, salt=_DIGEST_SALT, key_derivation="hmac").derive_key(),
                digestmod=hashlib.sha256,
            )
            for key in keys
        ]

    def digest(self, token: str) -> str:
        """The digest stored for a new token."""
        return self.candidates(token)[0]

    def candidates(self, token: str) -> list[str]:
        """Every digest this token may be stored under, newest key first."""
        message = token.encode("ascii")
        digests = []
        for keyed in self._hmacs:
            mac = keyed.copy()
            mac.update(message)
            digests.append(mac.hexdigest())
        return digests
