"""Configuration: every ``ACCESSTOKENS_*`` key, its default, and its check.

``init_app`` reads them all once into :class:`Settings`, so a bad value fails
at start-up with the key's name instead of as a 500 on the first request.
Only the digest keys may be resolved later, from ``SECRET_KEY``, which apps
often set after ``init_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from limits import parse
from limits import storage as limits_storage

from .errors import ConfigurationError
from .resources import DEFAULT_VIEW_ARGS
from .tokenformat import check_prefix

#: Bitbucket's ceiling for the rotation grace window.
MAX_ROTATION_GRACE = timedelta(minutes=30)
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
        if provider.lower() == "public":  # public revocation's name in token_leaked
            raise ConfigurationError(key, "provider 'public' is taken by public revocation")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(key, f"{provider}: {url!r} is not an http(s) URL")
        if not urlsplit(url).hostname:
            raise ConfigurationError(key, f"{provider}: {url!r} has no host")
    return dict(value)


def _sync_bound(key: str, value: Any) -> timedelta:
    bound = duration(key, value, positive=True)
    if bound > MAX_SYNC_BOUND:
        raise ConfigurationError(key, "must be at most 2 seconds: every revoking call waits it")
    return bound


def _public_revocation_limit(key: str, value: Any) -> str:
    checked = _rate_limit(key, value)
    if checked is None:
        raise ConfigurationError(key, "must be a rate such as '10/minute'")
    return checked


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
    "SCOPE_HEADERS": (True, _flag),
    "EXPIRY_WARNINGS": ((30, 7, 1), _days),
    "RECENT_CLIENTS_MAX_AGE": (timedelta(days=90), lambda k, v: duration(k, v, positive=True)),
    "SECRET_SCANNING_KEYS": ({"github": GITHUB_KEYS_URL}, _keys_urls),
    "PUBLIC_REVOCATION_LIMIT": ("10/minute", _public_revocation_limit),
    "POSTGRESQL_CACHE": (True, _flag),
    "POSTGRESQL_SYNC_BOUND": (timedelta(milliseconds=250), _sync_bound),
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
    scope_headers: bool
    expiry_warnings: tuple[int, ...]
    recent_clients_max_age: timedelta
    secret_scanning_keys: dict[str, str]
    public_revocation_limit: str
    postgresql_cache: bool
    postgresql_sync_bound: timedelta


def load(config: dict[str, Any]) -> Settings:
    """Fill in defaults with ``setdefault`` and check every key."""
    values = {}
    for name, (default, check) in KEYS.items():
        key = f"ACCESSTOKENS_{name}"
        config.setdefault(key, default)
        values[name.lower()] = check(key, config[key])
    return Settings(**values)
