"""Reading an access token from a request.

Two forms are accepted, as Bitbucket accepts them:

- ``Authorization: Bearer <token>`` (RFC 6750; the scheme name is
  case-insensitive, RFC 7235);
- ``Authorization: Basic base64("x-token-auth:<token>")``, which is what git
  and other HTTP clients with only a username and password can send.

Any other scheme, or Basic with another username, is "no token": it belongs to
whatever else the app does. :func:`presents_token` draws the same line for
routes that must leave the app's own credentials alone (``optional`` routes,
the management surfaces): there a Bearer value counts only with the
configured prefix. Tokens in the query string or form are never read,
because URLs end up in logs.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from werkzeug.wrappers import Request

from .errors import InvalidRequest

BASIC_USERNAME = "x-token-auth"
#: Far above any real token; anything larger is not worth parsing.
MAX_HEADER_LENGTH = 1024


def _token68(value: str) -> str:
    # One credential, visible ASCII, no separators: anything else is several
    # tokens or garbage, and guessing which part was meant would be unsafe.
    if not value or not value.isascii() or not value.isprintable() or " " in value:
        raise InvalidRequest()
    if "," in value:
        raise InvalidRequest()
    return value


def token_from_header(header: str | None) -> str | None:
    """The token in an ``Authorization`` header value, or None when the header
    carries no access token. Raises :class:`InvalidRequest` when it tries to
    and cannot be read."""
    if not header:
        return None
    if len(header) > MAX_HEADER_LENGTH:
        raise InvalidRequest("The Authorization header is too long.")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return _token68(value)
    if scheme != "basic":
        return None
    try:
        decoded = b64decode(_token68(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("The Basic credentials are not valid base64.") from None
    username, sep, password = decoded.partition(":")
    if not sep or username != BASIC_USERNAME:
        return None
    # Taken as sent: no trimming, so a token with stray spaces simply fails.
    return password


def token_from_request(request: Request) -> str | None:
    """The access token a request presents, if any."""
    return token_from_header(request.environ.get("HTTP_AUTHORIZATION"))


def query_is_utf8(request: Request) -> bool:
    """Werkzeug raises on raw non-UTF-8 bytes in the query string; surfaces
    check first so such a request gets a 400, not a 500."""
    try:
        request.query_string.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def presents_token(header: str | None, prefix: str) -> bool:
    """Whether an ``Authorization`` header presents the extension's own
    credentials: ``Bearer <prefix>_...`` or Basic with the username
    ``x-token-auth``, well-formed or not. Basic credentials that are not
    base64 cannot say whose they are, and are left to the app.

    Everything else (a JWT, Basic for a real user, a Bearer value without
    the prefix, another scheme) belongs to the app's own login, as
    Flask-HTTPAuth's ``MultiAuth`` leaves each scheme to its owner. The
    prefix is compared case-insensitively, so a mangled token still counts
    as one: management surfaces refuse it rather than ask the app.
    """
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value[: len(prefix) + 1].lower() == f"{prefix}_"
    if scheme != "basic":
        return False
    try:
        decoded = b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    username, sep, _ = decoded.partition(b":")
    return bool(sep) and username == BASIC_USERNAME.encode()
