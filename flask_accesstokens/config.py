"""Configuration: every ``ACCESSTOKENS_*`` key, its default, and its check.

``init_app`` reads them all once into :class:`Settings`, so a bad value fails
at start-up with the key's name instead of as a 500 on the first request.
That includes the digest key: ``ACCESSTOKENS_DIGEST_KEYS`` or, without it,
``SECRET_KEY`` must be set before ``init_app``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from limits import parse
from limits import storage as limits_storage
from sqlalchemy.engine import url as sa_url
from sqlalchemy.exc import ArgumentError

from .addresses import IPNetwork
from .bounded import LEAK_PROVIDER_MAX_LENGTH
from .errors import ConfigurationError
from .resources import DEFAULT_VIEW_ARGS
from .tokenformat import check_prefix
from .words import MESSAGES

#: Bitbucket's ceiling for the rotation grace window.
MAX_ROTATION_GRACE = timedelta(minutes=30)
#: Introspection clients share a secret with the app: at least this long.
MIN_CLIENT_SECRET = 16
#: The longest PostgreSQL cache bound: every call that changes a token waits it.
MAX_SYNC_BOUND = timedelta(seconds=2)
GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"


def duration(key: str, value: Any, *, positive: bool = False) -> timedelta:
    """A timedelta, or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise ConfigurationError(key, f"is out of range: {value!r}") from None
    if not isinstance(value, timedelta):
        raise ConfigurationError(key, f"must be a timedelta or a number of seconds, not {value!r}")
    if value < timedelta(0) or (positive and not value):
        raise ConfigurationError(key, f"must be {'above' if positive else 'at least'} zero")
    return value


def _optional_duration(key: str, value: Any) -> timedelta | None:
    return None if value is None else duration(key, value, positive=True)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(key, f"must be True or False, not {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isprintable() or '"' in value:
        raise ConfigurationError(key, "must be a non-empty printable string without quotes")
    return value


def _url_prefix(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or (value and not value.startswith("/"))
        or "//" in value
        # Taken whole: no whitespace or control characters (a trailing
        # newline), nothing Werkzeug or a URL would read as more than a path.
        or not value.isprintable()
        or any(c.isspace() or c in "<>?#\\" for c in value)
    ):
        raise ConfigurationError(
            key, f"must be None, '' or a path starting with '/', not {value!r}"
        )
    return value.rstrip("/")


def _view_args(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not set(value) <= set(DEFAULT_VIEW_ARGS):
        raise ConfigurationError(key, f"must map some of {sorted(DEFAULT_VIEW_ARGS)} to names")
    names = {part: value.get(part) or "" for part in DEFAULT_VIEW_ARGS}
    if not all(isinstance(name, str) for name in names.values()) or not names["workspace"]:
        raise ConfigurationError(key, "must name the workspace argument, and only with strings")
    return names


def _messages(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, "must map message keys to texts")
    unknown = sorted(str(k) for k in value if k not in MESSAGES)
    if unknown:
        raise ConfigurationError(key, f"has unknown keys {unknown}: see flask_accesstokens.words")
    if not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigurationError(key, "must map each key to a non-empty string")
    return dict(value)


def _digest_keys(key: str, value: Any) -> tuple[str | bytes, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(key, "must be None or a list of keys, newest first")
    if not value or not all(isinstance(k, (str, bytes)) and k for k in value):
        raise ConfigurationError(key, "must hold at least one non-empty key")
    return tuple(value)


def _timeout(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 3_600_000:
        raise ConfigurationError(
            key, f"must be None or milliseconds from 1 to 3600000, not {value!r}"
        )
    return value


def _rate_limit(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(key, f"must be None or a rate such as '10/minute', not {value!r}")
    try:
        parse(value)
    except ValueError:
        raise ConfigurationError(
            key, f"must be a rate such as '10/minute', not {value!r}"
        ) from None
    return value


def _storage_uri(key: str, value: Any) -> str:
    if not isinstance(value, str) or "://" not in value:
        raise ConfigurationError(key, f"must be a storage URI such as 'memory://', not {value!r}")
    scheme = value.partition("://")[0]
    if scheme not in limits_storage.SCHEMES:  # type: ignore[attr-defined]
        raise ConfigurationError(key, f"has an unknown scheme {scheme!r}")
    return value


def _days(key: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(key, "must be a list of whole days, e.g. (30, 7, 1)")
    if not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 3650 for d in value):
        raise ConfigurationError(key, "must hold whole days from 1 to 3650")
    return tuple(sorted(set(value), reverse=True))


def _keys_urls(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, "must map provider names to public-key URLs")
    for provider, url in value.items():
        if not isinstance(provider, str) or not provider.isalnum() or not provider.isascii():
            raise ConfigurationError(key, f"provider {provider!r} must be ASCII letters and digits")
        if len(provider) > LEAK_PROVIDER_MAX_LENGTH:  # it is stored as the leak's provider
            raise ConfigurationError(
                key, f"provider {provider!r} must be at most {LEAK_PROVIDER_MAX_LENGTH} characters"
            )
        if provider.lower() == "public":  # public revocation's name in token_leaked
            raise ConfigurationError(key, "provider 'public' is taken by public revocation")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(key, f"{provider}: {url!r} is not an http(s) URL")
        if not urlsplit(url).hostname:
            raise ConfigurationError(key, f"{provider}: {url!r} has no host")
    return dict(value)


def _ipv6_prefix(key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 32 <= value <= 128:
        raise ConfigurationError(key, f"must be a prefix length from 32 to 128, not {value!r}")
    return value


#: What an ``ACCESSTOKENS_OIDC_ISSUERS`` entry may say, and the type of each.
_ISSUER_FIELDS = {"issuer": str, "audience": str, "multiple_audiences": bool, "jti": bool}


def _oidc_issuers(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """Issuer name -> ``{"issuer": URL, "audience": str}``, optionally
    ``multiple_audiences`` and ``jti`` (booleans)."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, "must map issuer names to {'issuer', 'audience'}")
    checked: dict[str, dict[str, Any]] = {}
    urls: set[str] = set()
    for name, entry in value.items():
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= 64
            or not name.isascii()
            or not all(c.isalnum() or c in "-_" for c in name)
        ):
            raise ConfigurationError(
                key, f"issuer name {name!r} must be 1-64 letters, digits, - or _"
            )
        if not isinstance(entry, Mapping) or not {"issuer", "audience"} <= set(entry):
            raise ConfigurationError(key, f"{name}: must have 'issuer' and 'audience'")
        for field, field_value in entry.items():
            expected = _ISSUER_FIELDS.get(field)
            if expected is None:
                raise ConfigurationError(key, f"{name}: unknown field {field!r}")
            if not isinstance(field_value, expected):
                raise ConfigurationError(key, f"{name}: {field!r} must be a {expected.__name__}")
        url, audience = entry["issuer"], entry["audience"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigurationError(key, f"{name}: issuer {url!r} is not an http(s) URL")
        if url in urls:
            raise ConfigurationError(key, f"{name}: issuer {url!r} is configured twice")
        urls.add(url)
        if not audience or not audience.isprintable():
            raise ConfigurationError(key, f"{name}: 'audience' must be a non-empty string")
        checked[name] = dict(entry)
    return checked


def _sync_bound(key: str, value: Any) -> timedelta:
    bound = duration(key, value, positive=True)
    if bound > MAX_SYNC_BOUND:
        raise ConfigurationError(key, "must be at most 2 seconds: every revoking call waits it")
    return bound


def _read_database_uri(key: str, value: Any) -> sa_url.URL | None:
    """One PostgreSQL server's URL; whether it is a synchronous standby is
    checked when the request path first connects (``standby.py``)."""
    if value is None:
        return None
    if not isinstance(value, (str, sa_url.URL)):
        raise ConfigurationError(key, "must be a database URL")
    try:
        url = sa_url.make_url(value)
    except (TypeError, ValueError, ArgumentError):
        raise ConfigurationError(key, "must be a database URL") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigurationError(
            key, f"must be a PostgreSQL hot standby's URL, not {url.get_backend_name()!r}"
        )
    if "," in (url.host or "") or "host" in url.query or "hostaddr" in url.query:
        raise ConfigurationError(key, "must name one server: a check vouches for one standby")
    return url


def _public_revocation_limit(key: str, value: Any) -> str:
    checked = _rate_limit(key, value)
    if checked is None:
        raise ConfigurationError(key, "must be a rate such as '10/minute'")
    return checked


def _proxies(key: str, value: Any) -> tuple[IPNetwork, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(key, "must be a list of networks, e.g. ['127.0.0.0/8']")
    networks: list[IPNetwork] = []
    for entry in value:
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except (TypeError, ValueError):
            raise ConfigurationError(key, f"{entry!r} is not a network in strict form") from None
    return tuple(networks)


def _introspection_clients(key: str, value: Any) -> dict[str, bytes]:
    """Client id -> SHA-256 of its secret: the secrets themselves are not kept
    beyond the app's own config."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(key, "must map client ids to secrets")
    clients: dict[str, bytes] = {}
    for client_id, secret in value.items():
        # RFC 7617: a user-id cannot hold a colon; both travel in a header.
        if not isinstance(client_id, str) or not client_id.isprintable() or ":" in client_id:
            raise ConfigurationError(key, f"client id {client_id!r} must be printable, no colon")
        if not client_id or len(client_id) > 255:
            raise ConfigurationError(key, "client ids must be 1 to 255 characters")
        if not isinstance(secret, str) or len(secret) < MIN_CLIENT_SECRET or len(secret) > 1024:
            raise ConfigurationError(
                key,
                f"{client_id}: the secret must be a string of {MIN_CLIENT_SECRET} to 1024"
                " characters",
            )
        clients[client_id] = hashlib.sha256(secret.encode("utf-8")).digest()
    return clients


Check = Callable[[str, Any], Any]

#: key (without the prefix) -> (default, check). ``docs/config.rst`` documents each.
KEYS: dict[str, tuple[Any, Check]] = {
    "TOKEN_PREFIX": ("bbat", lambda k, v: _checked_prefix(k, v)),
    "REALM": ("api", _text),
    "VIEW_ARGS": (dict(DEFAULT_VIEW_ARGS), _view_args),
    "DIGEST_KEYS": (None, _digest_keys),
    "LAST_USED_RESOLUTION": (timedelta(minutes=1), lambda k, v: duration(k, v)),
    "ROTATION_GRACE": (timedelta(0), lambda k, v: _grace(k, v)),
    "REVOKE_ON_REUSE": (True, _flag),
    "MAX_LIFETIME": (None, _optional_duration),
    "FAILURE_AUDIT_INTERVAL": (timedelta(minutes=1), lambda k, v: duration(k, v, positive=True)),
    "STATEMENT_TIMEOUT": (None, _timeout),
    "API_URL_PREFIX": ("/api", _url_prefix),
    "ADMIN_URL_PREFIX": (None, _url_prefix),
    "CLI": (True, _flag),
    "RATELIMIT": (None, _rate_limit),
    "RATELIMIT_STORAGE_URI": ("memory://", _storage_uri),
    "RATELIMIT_IPV6_PREFIX": (64, _ipv6_prefix),
    "SCOPE_HEADERS": (True, _flag),
    "EXPIRY_WARNINGS": ((30, 7, 1), _days),
    "RECENT_CLIENTS_MAX_AGE": (timedelta(days=90), lambda k, v: duration(k, v, positive=True)),
    "SECRET_SCANNING_KEYS": ({"github": GITHUB_KEYS_URL}, _keys_urls),
    "PUBLIC_REVOCATION_LIMIT": ("10/minute", _public_revocation_limit),
    "MESSAGES": ({}, _messages),
    "GATEWAY_PROXIES": (["127.0.0.0/8", "::1/128"], _proxies),
    "INTROSPECTION_CLIENTS": ({}, _introspection_clients),
    "OIDC_ISSUERS": ({}, _oidc_issuers),
    "OIDC_EXCHANGE_LIMIT": ("60/minute", _public_revocation_limit),
    "POSTGRESQL_CACHE": (True, _flag),
    "POSTGRESQL_SYNC_BOUND": (timedelta(milliseconds=250), _sync_bound),
    "READ_DATABASE_URI": (None, _read_database_uri),
}


def _checked_prefix(key: str, value: Any) -> str:
    try:
        return check_prefix(value)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(key, str(e)) from None


def _grace(key: str, value: Any) -> timedelta:
    grace = duration(key, value)
    if grace > MAX_ROTATION_GRACE:
        raise ConfigurationError(key, "must be at most 30 minutes, as on Bitbucket")
    return grace


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app."""

    token_prefix: str
    realm: str
    view_args: dict[str, str]
    digest_keys: tuple[str | bytes, ...] | None
    last_used_resolution: timedelta
    rotation_grace: timedelta
    revoke_on_reuse: bool
    max_lifetime: timedelta | None
    failure_audit_interval: timedelta
    statement_timeout: int | None
    api_url_prefix: str | None
    admin_url_prefix: str | None
    cli: bool
    ratelimit: str | None
    ratelimit_storage_uri: str
    ratelimit_ipv6_prefix: int
    scope_headers: bool
    expiry_warnings: tuple[int, ...]
    recent_clients_max_age: timedelta
    secret_scanning_keys: dict[str, str]
    public_revocation_limit: str
    messages: dict[str, str]
    gateway_proxies: tuple[IPNetwork, ...]
    #: client id -> SHA-256 of its secret
    introspection_clients: dict[str, bytes]
    oidc_issuers: dict[str, dict[str, Any]]
    oidc_exchange_limit: str
    postgresql_cache: bool
    postgresql_sync_bound: timedelta
    #: Not in the repr: it may hold a password.
    read_database_uri: sa_url.URL | None = dataclasses.field(repr=False)


def load(config: dict[str, Any]) -> Settings:
    """Fill in defaults with ``setdefault`` and check every key."""
    values = {}
    for name, (default, check) in KEYS.items():
        key = f"ACCESSTOKENS_{name}"
        config.setdefault(key, default)
        values[name.lower()] = check(key, config[key])
    if values["digest_keys"] is None and not config.get("SECRET_KEY"):
        # Without a key no token can be made or checked: say so at start-up,
        # not as a 500 on the first request that carries one.
        raise ConfigurationError(
            "ACCESSTOKENS_DIGEST_KEYS",
            "is not set and neither is SECRET_KEY: set one of them before init_app,"
            " the digests of tokens are keyed with it",
        )
    return Settings(**values)
