"""Verifying a CI provider's OIDC ID token: its issuer's keys, its signature
and its claims. Whether a trust policy accepts the claims, and what the
exchange mints, is ``trustpolicy.py``'s business.

Modelled on warehouse's ``warehouse/oidc/``, with the contract's choices:

- only RS256 and ES256, each bound to its key type, so no token can pick an
  algorithm its key was not made for (``alg: none``, or HS256 "signed" with
  the public key, never verify);
- ``iss`` and ``aud`` as configured, one audience unless the issuer is
  configured with ``multiple_audiences`` (Bitbucket Pipelines); ``exp``,
  ``iat``, ``sub`` and ``jti`` required; ``nbf`` honoured; :data:`LEEWAY`;
  at most :data:`MAX_TOKEN_LIFETIME` left to live;
- the issuer is chosen from the configured ones by the token's ``iss``
  before anything is fetched, so a token cannot make us fetch a URL.

PyJWT checks the signature and the claims; its ``PyJWKClient`` is not used
(it refetches on every unknown ``kid``, forgets its keys when a refresh
fails and never expires a key). :class:`KeySet` is the cache instead: per
issuer, bounded, an unknown ``kid`` refetching at most once per
:data:`REFETCH_INTERVAL` whatever requests say, the last good key set kept
when a fetch fails. Every failure is a :class:`Refusal` value with a code,
never an unhandled exception.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any

from .fetching import fetch

try:
    import jwt
except ModuleNotFoundError:  # the ``oidc`` extra; checked when an issuer is configured
    jwt = None  # type: ignore[assignment]

log = logging.getLogger("flask_accesstokens")

#: Key type to the one algorithm its keys verify.
ALGORITHMS = {"RSA": "RS256", "EC": "ES256"}
#: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat`` (the
#: contract allows at most 60; warehouse uses 30).
LEEWAY = 30
#: Seconds between two fetches of one issuer's keys, whatever requests say.
REFETCH_INTERVAL = 60.0
#: Seconds a fetched key set is trusted before a lookup refreshes it, so a
#: key the issuer withdraws stops verifying without a restart.
MAX_KEYS_AGE = 3600.0
FETCH_TIMEOUT = 5.0
#: Discovery documents and key sets are small; anything far larger is not one.
MAX_DOCUMENT_BYTES = 256 * 1024
#: Keys kept per issuer: providers publish a handful.
MAX_KEYS = 64
#: ID tokens are a few KiB; GitLab's carry the most claims.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_KID_LENGTH = 256
MAX_JTI_LENGTH = 255
MIN_RSA_BITS = 2048
#: Seconds an ID token may still have to live: CI providers issue tokens for
#: minutes, an hour at most.
MAX_TOKEN_LIFETIME = 24 * 3600


class Refusal(Exception):
    """Why an ID token (or an exchange) is refused: ``code`` for the answer's
    ``error.code``, ``status`` for its HTTP status, ``message`` for people.
    Messages never quote the token or a claim's value."""

    code = "invalid-token"
    status = 401

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class IssuerUnavailable(Refusal):
    """The issuer's keys cannot be fetched and none are cached: nothing can
    be verified, so nothing is granted (503)."""

    code = "issuer-unavailable"
    status = 503


@dataclass(frozen=True)
class Issuer:
    """One entry of ``ACCESSTOKENS_OIDC_ISSUERS``."""

    name: str
    url: str
    audience: str
    multiple_audiences: bool = False
    #: False for an issuer whose tokens carry no ``jti``: replays are then
    #: recognised by a digest of the whole ID token.
    jti: bool = True

    @classmethod
    def from_config(cls, name: str, entry: Mapping[str, Any]) -> Issuer:
        return cls(
            name=name,
            url=entry["issuer"],
            audience=entry["audience"],
            multiple_audiences=bool(entry.get("multiple_audiences", False)),
            jti=bool(entry.get("jti", True)),
        )


@dataclass(frozen=True)
class VerifiedToken:
    """An ID token whose signature and claims hold."""

    issuer: Issuer
    claims: Mapping[str, Any]
    #: SHA-256 hex naming this token for replay protection: of the issuer's
    #: name and ``jti``, or of the whole token for ``"jti": false`` issuers.
    replay_key: str
    expires_at: datetime


def require_pyjwt() -> None:
    """``init_app`` calls this when issuers are configured: say what to
    install at start-up, not on a CI job's first exchange."""
    if jwt is None:
        raise ImportError(
            "ACCESSTOKENS_OIDC_ISSUERS needs PyJWT: pip install 'Flask-AccessTokens[oidc]'"
        )


def fetch_json(url: str, timeout: float = FETCH_TIMEOUT) -> Any:
    """A small JSON document over http(s), read within about ``timeout``
    seconds in all (a server trickling bytes cannot hold a worker)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("not an http(s) URL")
    return json.loads(fetch(url, timeout, MAX_DOCUMENT_BYTES))


def parse_jwks(document: Any) -> dict[str, tuple[Any, str]]:
    """``kid`` to (public key, its algorithm). Entries that are not RSA
    (at least 2048 bits) or P-256 signing keys with a ``kid`` are left out,
    so they verify nothing."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWK Set ({'keys': [...]})")
    keys: dict[str, tuple[Any, str]] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict):
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        algorithm = ALGORITHMS.get(kty) if isinstance(kty, str) else None
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH or algorithm is None:
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", algorithm) != algorithm:
            continue
        if kty == "EC" and entry.get("crv") != "P-256":
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=algorithm).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if kty == "RSA" and getattr(key, "key_size", 0) < MIN_RSA_BITS:
            continue
        keys[kid] = (key, algorithm)
    return keys


class KeySet:
    """One issuer's signing keys, from its discovery document's ``jwks_uri``.

    Lookups of a known ``kid`` take no lock. An unknown ``kid`` makes one
    refetch at most, and only if none was tried in the last
    ``refetch_interval`` seconds; concurrent askers wait for that one fetch.
    A failed fetch keeps the keys already known (and is logged); with no
    keys at all it is :class:`IssuerUnavailable`.
    """

    def __init__(
        self,
        issuer: str,
        *,
        timeout: float = FETCH_TIMEOUT,
        refetch_interval: float = REFETCH_INTERVAL,
        max_age: float = MAX_KEYS_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._timeout = timeout
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        # Replaced whole, never mutated: readers without the lock see one set.
        self._keys: dict[str, tuple[Any, str]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        #: How many times the keys were fetched (tests and metrics).
        self.fetches = 0

    def get(self, kid: str) -> tuple[Any, str] | None:
        """The key with this ``kid`` and its algorithm, or None when the
        issuer publishes none such."""
        key = self._keys.get(kid)
        if key is not None:
            if not self._is_fresh() and self._lock.acquire(blocking=False):
                # Stale but known: refresh if allowed, never wait for
                # someone else's refresh; the old set is better than none.
                try:
                    self._refetch()
                finally:
                    self._lock.release()
            # A refresh that succeeded is the truth (a key it dropped is
            # gone); one that failed left the last good set in place.
            return self._keys.get(kid)
        with self._lock:
            if kid not in self._keys:  # whoever held the lock may have fetched it
                self._refetch()
            if not self._keys and self._fetched_at is None:
                raise IssuerUnavailable("The token's issuer cannot be reached. Try again later.")
            return self._keys.get(kid)

    def _is_fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self._max_age

    def _refetch(self) -> None:
        """Fetch discovery, then the key set, unless a fetch was tried too
        recently. Call with the lock held."""
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < self._refetch_interval:
            return
        self._attempted_at = now
        self.fetches += 1
        try:
            discovery = fetch_json(
                self.issuer.rstrip("/") + "/.well-known/openid-configuration", self._timeout
            )
            if not isinstance(discovery, dict) or discovery.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("the discovery document has no jwks_uri")
            keys = parse_jwks(fetch_json(jwks_uri, self._timeout))
        except urllib.error.HTTPError as exc:
            exc.close()
            log.warning("Could not fetch the keys of %s: HTTP %s", self.issuer, exc.code)
            return
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as exc:
            # The message, never the body: it is whatever the server sent.
            log.warning(
                "Could not fetch the keys of %s: %s: %s", self.issuer, type(exc).__name__, exc
            )
            return
        self._keys = keys
        self._fetched_at = now


class Verifier:
    """ID-token verification for the configured issuers, one :class:`KeySet`
    each (so the cache is bounded by the configuration)."""

    def __init__(self, issuers: Mapping[str, Issuer], **keyset_options: Any) -> None:
        self.issuers = dict(issuers)
        self._by_url = {issuer.url: issuer for issuer in self.issuers.values()}
        self.keysets = {
            issuer.url: KeySet(issuer.url, **keyset_options) for issuer in self.issuers.values()
        }

    def verify(self, token: object, now: float | None = None) -> VerifiedToken:
        """The verified token, or :class:`Refusal`."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise Refusal("Send the CI job's OIDC ID token as 'token'.")
        if not token.isascii() or token.count(".") != 2:
            raise Refusal("The ID token is not a signed JWT.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise Refusal("The ID token is not a signed JWT.") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS.values():
            raise Refusal("The ID token must be signed with RS256 or ES256.")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise Refusal("The ID token names no signing key ('kid').")
        iss = unverified.get("iss")
        issuer = self._by_url.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Refusal("The ID token's issuer is not trusted here.")
        found = self.keysets[issuer.url].get(kid)
        if found is None:
            raise Refusal("The ID token is signed by a key its issuer does not publish.")
        key, key_algorithm = found
        if algorithm != key_algorithm:
            raise Refusal("The ID token's algorithm does not match its key.")
        required = ["exp", "iat", "iss", "aud", "sub"] + (["jti"] if issuer.jti else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[key_algorithm],
                audience=issuer.audience,
                issuer=issuer.url,
                leeway=LEEWAY,
                options={"require": required, "strict_aud": not issuer.multiple_audiences},
            )
        except jwt.ExpiredSignatureError:
            raise Refusal("The ID token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Refusal("The ID token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise Refusal("The ID token is not meant for this audience.") from None
        except jwt.MissingRequiredClaimError as e:
            raise Refusal(f"The ID token lacks the '{e.claim}' claim.") from None
        except jwt.InvalidSignatureError:
            raise Refusal("The ID token's signature does not verify.") from None
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            raise Refusal("The ID token's claims are not valid.") from None
        return VerifiedToken(issuer, claims, _replay_key(issuer, claims, token), _expiry(claims))


def _replay_key(issuer: Issuer, claims: Mapping[str, Any], token: str) -> str:
    if not issuer.jti:
        # The signed part (header and payload), not the signature: an ECDSA
        # signature can be altered into another valid one (s -> n - s), and
        # a replay must not pass as a new token that way.
        signed = token.rsplit(".", 1)[0]
        return hashlib.sha256(signed.encode("ascii")).hexdigest()
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise Refusal("The ID token's 'jti' claim is not valid.")
    return hashlib.sha256(f"{issuer.name}\0{jti}".encode()).hexdigest()


def _expiry(claims: Mapping[str, Any]) -> datetime:
    """When the token expires. CI providers' tokens live minutes to an hour;
    one that claims to live far longer is refused, so replay protection
    never has to remember a token for years."""
    exp = claims["exp"]  # checked by PyJWT: a number, in the future
    if float(exp) > time.time() + MAX_TOKEN_LIFETIME:
        raise Refusal("The ID token lives too long to be a CI job's.")
    return datetime.fromtimestamp(float(exp), timezone.utc)
