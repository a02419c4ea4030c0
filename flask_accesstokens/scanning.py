"""Leaked-token reports from secret scanners: their keys, signatures and bodies.

GitHub's secret-scanning partner program (and GitLab's, which follows it)
POSTs a JSON array of the tokens it found in public code. Anyone can POST to
that URL, so a report counts only when it is signed: the headers
``<Provider>-Public-Key-Identifier`` and ``<Provider>-Public-Key-Signature``
carry a key identifier and a base64 DER ECDSA P-256 / SHA-256 signature over
the raw body, by a key the provider publishes as
``{"public_keys": [{"key_identifier", "key", "is_current"}]}``.

This module only decides whether a report is genuine and what it says. Which
tokens it names, revoking them and answering is the caller's work.

Anonymous requests decide which key identifier we look up, so they must not
decide how often we fetch the keys: a provider's document is fetched at most
once per :data:`REFETCH_INTERVAL`, however many unknown identifiers arrive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .fetching import fetch

log = logging.getLogger("flask_accesstokens")

#: The largest report body accepted. GitHub batches matches; 1 MiB holds
#: thousands of them.
MAX_REPORT_BYTES = 1024 * 1024
#: The most entries one report may name. Each costs a lookup, so an
#: unbounded array would let a signed-but-huge report stall a worker.
MAX_REPORT_ENTRIES = 1000
#: A keys document is a few keys; anything far larger is not one.
MAX_KEYS_DOCUMENT_BYTES = 256 * 1024
#: Seconds allowed for fetching a keys document.
FETCH_TIMEOUT = 5.0
#: Seconds between two fetches of one provider's keys, whatever requests say.
REFETCH_INTERVAL = 60.0
#: Seconds a fetched document is trusted before the next lookup refreshes it,
#: so a key the provider withdraws stops verifying without a restart.
MAX_KEYS_AGE = 3600.0

#: GitHub's feedback labels: the token is one this app issued, or it is not.
TRUE_POSITIVE = "true_positive"
FALSE_POSITIVE = "false_positive"

#: Providers become URL segments and header names, so they are HTTP tokens.
_PROVIDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
#: ``public`` names public revocation in ``token_leaked``; a scanner may not
#: take it.
_RESERVED_PROVIDERS = frozenset({"public"})
_MAX_KEY_ID_LENGTH = 256
#: A DER P-256 signature is at most 72 bytes, 96 in base64.
_MAX_SIGNATURE_LENGTH = 512


class InvalidReport(ValueError):
    """The report is not genuine or not well formed: answer 400, revoke nothing."""


@dataclass(frozen=True)
class ReportedToken:
    """One entry of a report, as the scanner sent it."""

    token: str
    type: str
    #: Where the scanner found it; GitHub sends it, others may not.
    url: str | None
    #: Where on the provider it was found (``content``, ``commit``, ...);
    #: GitLab's reports have none.
    source: str | None

    def feedback(self, *, issued: bool) -> dict[str, str]:
        """The answer's entry for this token: GitHub's feedback format."""
        return {
            "token_hash": token_hash(self.token),
            "token_type": self.type,
            "label": TRUE_POSITIVE if issued else FALSE_POSITIVE,
        }


def token_hash(token: str) -> str:
    """SHA-256 hex of the token string: how the answer names a token without
    echoing the secret."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_provider(provider: str) -> str:
    """Provider names end up in URLs and header names, so keep them plain."""
    if not _PROVIDER_RE.fullmatch(provider) or provider.lower() in _RESERVED_PROVIDERS:
        raise ValueError(
            f"ACCESSTOKENS_SECRET_SCANNING_KEYS: provider {provider!r} must be 1-32 letters,"
            " digits or hyphens, and not 'public'"
        )
    return provider


def check_keys_url(url: str) -> str:
    """Only http(s): urllib would happily read ``file://`` URLs too."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"ACCESSTOKENS_SECRET_SCANNING_KEYS: {url!r} is not an http(s) URL")
    return url


def check_secret_scanning_keys(value: object) -> dict[str, str]:
    """The ``ACCESSTOKENS_SECRET_SCANNING_KEYS`` setting, checked: provider
    name to keys URL. For ``init_app``, so a typo fails at start-up."""
    if not isinstance(value, Mapping):
        raise ValueError("ACCESSTOKENS_SECRET_SCANNING_KEYS must map provider names to URLs")
    checked: dict[str, str] = {}
    for provider, url in value.items():
        if not isinstance(provider, str) or not isinstance(url, str):
            raise ValueError("ACCESSTOKENS_SECRET_SCANNING_KEYS must map provider names to URLs")
        checked[check_provider(provider)] = check_keys_url(url)
    return checked


def header_names(provider: str) -> tuple[str, str]:
    """The key identifier and signature headers, named after the provider as
    GitHub names its own: ``github`` -> ``Github-Public-Key-Identifier``."""
    name = check_provider(provider).capitalize()
    return f"{name}-Public-Key-Identifier", f"{name}-Public-Key-Signature"


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey | None:
    """A P-256 public key from PEM, or None for anything else.

    Other curves and key types are refused rather than verified with: the
    protocol names one algorithm, and accepting more only widens what a
    tampered keys document could slip in.
    """
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def verify_signature(key: ec.EllipticCurvePublicKey, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64 of DER) signs exactly these bytes.

    The raw body, never a re-serialised parse of it: JSON has many spellings
    of one value, and only the bytes sent were signed.
    """
    if len(signature) > _MAX_SIGNATURE_LENGTH:
        return False
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def _parse_keys(document: bytes, url: str) -> dict[str, ec.EllipticCurvePublicKey]:
    """Key identifier to key. Entries that are not P-256 keys are left out
    (and logged), so they verify nothing."""
    data: Any = json.loads(document)
    entries = data.get("public_keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a {'public_keys': [...]} document")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in entries:
        key_id = entry.get("key_identifier") if isinstance(entry, dict) else None
        pem = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(key_id, str) or not isinstance(pem, str):
            log.warning("Secret-scanning keys from %s: an entry without identifier or key", url)
            continue
        key = load_public_key(pem)
        if key is None:
            log.warning(
                "Secret-scanning keys from %s: key %.64r is not a P-256 EC key; ignored",
                url,
                key_id,
            )
            continue
        keys[key_id] = key
    return keys


class PublicKeys:
    """One provider's public keys, fetched when needed and cached.

    Lookups of a known identifier take no lock. An unknown identifier makes
    one refetch at most, and only if none was tried in the last
    ``refetch_interval`` seconds; concurrent askers wait for that one fetch
    instead of starting their own. A fetch that fails keeps the keys already
    known, is logged, and to the caller just means "key unknown".
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = FETCH_TIMEOUT,
        refetch_interval: float = REFETCH_INTERVAL,
        max_age: float = MAX_KEYS_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_keys_url(url)
        self._timeout = timeout
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        # Replaced whole, never mutated, so readers without the lock see a
        # complete document.
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    def get(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key with this identifier, or None when the provider has none
        (or cannot be asked right now)."""
        if len(key_id) > _MAX_KEY_ID_LENGTH:
            return None  # no provider names keys like this; not worth a fetch
        key = self._keys.get(key_id)
        if key is not None:
            if self._is_fresh():
                return key
            # Stale but known: refresh unless someone already is, and never
            # wait for it; the old document is better than no answer.
            if self._lock.acquire(blocking=False):
                try:
                    self._refetch()
                finally:
                    self._lock.release()
            return self._keys.get(key_id)
        with self._lock:
            # Whoever held the lock may just have fetched this key.
            if key_id not in self._keys:
                self._refetch()
            return self._keys.get(key_id)

    def _is_fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._max_age

    def _refetch(self) -> None:
        """Fetch the document, unless a fetch was tried too recently. Call
        with the lock held."""
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._refetch_interval:
            return
        self._attempted_at = now
        try:
            keys = _parse_keys(fetch(self.url, self._timeout, MAX_KEYS_DOCUMENT_BYTES), self.url)
        except urllib.error.HTTPError as exc:
            exc.close()
            log.warning("Could not fetch secret-scanning keys from %s: HTTP %s", self.url, exc.code)
            return
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as exc:
            # The message, never the body: it is whatever the server sent.
            log.warning(
                "Could not fetch secret-scanning keys from %s: %s: %s",
                self.url,
                type(exc).__name__,
                exc,
            )
            return
        self._keys = keys
        self._fetched_at = now


def parse_report(body: bytes) -> list[ReportedToken]:
    """The entries of a report body, in order, duplicates kept (the answer
    has one entry per reported token).

    Fields beyond ``token``, ``type``, ``url`` and ``source`` are ignored, so
    a provider adding one does not break reports.
    """
    if len(body) > MAX_REPORT_BYTES:
        raise InvalidReport(f"report body is larger than {MAX_REPORT_BYTES} bytes")
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidReport("report body is not JSON") from None
    if not isinstance(data, list):
        raise InvalidReport("report body is not a JSON array")
    if len(data) > MAX_REPORT_ENTRIES:
        raise InvalidReport(f"report has more than {MAX_REPORT_ENTRIES} entries")
    return [_entry(index, item) for index, item in enumerate(data)]


def _entry(index: int, item: object) -> ReportedToken:
    if not isinstance(item, dict):
        raise InvalidReport(f"report entry {index} is not an object")
    token = _text(index, item, "token")
    type_ = _text(index, item, "type")
    if token is None or type_ is None:
        raise InvalidReport(f"report entry {index}: 'token' and 'type' are required")
    return ReportedToken(
        token=token,
        type=type_,
        url=_text(index, item, "url"),
        source=_text(index, item, "source"),
    )


def _text(index: int, item: dict[str, object], field: str) -> str | None:
    """A string field, or None when missing or null."""
    value = item.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidReport(f"report entry {index}: {field!r} must be a string")
    try:
        # JSON allows lone surrogates; no scanner sends them, and they
        # cannot be hashed or logged as UTF-8.
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidReport(f"report entry {index}: {field!r} is not valid Unicode") from None
    return value


class ReportVerifier:
    """Verifies reports against each provider's keys, one cache per
    provider and keys URL.

    Keys are public and the same for every app, so one verifier may serve a
    whole process; :func:`verify_report` uses such a shared one.
    """

    def __init__(
        self,
        *,
        timeout: float = FETCH_TIMEOUT,
        refetch_interval: float = REFETCH_INTERVAL,
        max_age: float = MAX_KEYS_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "refetch_interval": refetch_interval,
            "max_age": max_age,
            "clock": clock,
        }
        self._lock = threading.Lock()
        self._caches: dict[tuple[str, str], PublicKeys] = {}

    def keys(self, provider: str, keys_url: str) -> PublicKeys:
        """The cache for this provider, made on first use."""
        with self._lock:
            cache = self._caches.get((provider, keys_url))
            if cache is None:
                cache = PublicKeys(keys_url, **self._options)
                self._caches[(provider, keys_url)] = cache
            return cache

    def verify(
        self,
        provider: str,
        keys_url: str,
        body: bytes,
        key_id: str | None,
        signature: str | None,
    ) -> list[ReportedToken]:
        """The report's entries if it is genuine, else :class:`InvalidReport`.

        Cheap refusals come first: an oversized body or missing headers never
        cost a key lookup, and nothing is parsed before the signature holds.
        """
        if len(body) > MAX_REPORT_BYTES:
            raise InvalidReport(f"report body is larger than {MAX_REPORT_BYTES} bytes")
        if not key_id or not signature:
            raise InvalidReport("report is not signed")
        key = self.keys(provider, keys_url).get(key_id)
        if key is None:
            raise InvalidReport(f"unknown {provider} public key")
        if not verify_signature(key, body, signature):
            raise InvalidReport("report signature does not verify")
        return parse_report(body)


_shared = ReportVerifier()


def verify_report(
    provider: str,
    keys_url: str,
    body: bytes,
    key_id: str | None,
    signature: str | None,
) -> list[ReportedToken]:
    """:meth:`ReportVerifier.verify` with the process's shared key caches."""
    return _shared.verify(provider, keys_url, body, key_id, signature)
