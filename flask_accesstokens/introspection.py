"""RFC 7662 token introspection, for services that cannot sit behind a gateway.

A resource server (an MCP server, a Go service) posts a token it was given
and learns whether it is active, what it may do (``scope``: every scope it
holds, implied ones included, since verifiers compare flat sets) and which
resource it is bound to. It authenticates with HTTP Basic as a client of
``ACCESSTOKENS_INTROSPECTION_CLIENTS``; only digests of those secrets are kept.

The answer is live on every request: a revoked token is inactive as soon as
the revocation returns, so a verifier must not cache it (``Cache-Control:
no-store``). Unknown, revoked, expired and canary tokens get the same
``{"active": false}``; a canary also raises its alarm. A token with a client
address allow list is inactive too: introspection does not say where the
token came from, so the list could not be honoured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from typing import Any
from urllib.parse import parse_qs

from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.wrappers import Response

from .errors import AccessTokenError
from .errors import StorageUnavailable
from .gateway import resource_values
from .models import AccessToken
from .pipeline import Pipeline
from .ratelimit import Throttle
from .state import app_state

#: ``app.extensions`` key of the app's throttle of failed client authentication.
THROTTLE_KEY = "accesstokens.introspection"
#: Failed client authentications allowed per address when
#: ``ACCESSTOKENS_RATELIMIT`` sets no budget of its own.
DEFAULT_LIMIT = "10/minute"
#: A form with one token fits easily; nothing more is read.
MAX_BODY = 16 * 1024
#: Compared against when the client id is unknown, so that costs the same.
_NO_CLIENT = hashlib.sha256(b"no such introspection client").digest()
_throttle_lock = threading.Lock()


def _answer(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers.update(headers)
    return response


def _throttle() -> Throttle:
    extensions = current_app.extensions
    throttle: Throttle | None = extensions.get(THROTTLE_KEY)
    if throttle is None:
        with _throttle_lock:
            throttle = extensions.get(THROTTLE_KEY)
            if throttle is None:
                settings = app_state().settings
                throttle = extensions[THROTTLE_KEY] = Throttle(
                    settings.ratelimit or DEFAULT_LIMIT,
                    settings.ratelimit_storage_uri,
                    "accesstokens.introspection",
                )
    return throttle


def authenticated_client() -> str | None:
    """The introspection client of HTTP Basic credentials, or None. The
    secret is compared as a digest in constant time, and an unknown client id
    costs the same comparison."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    clients = app_state().settings.introspection_clients
    expected = clients.get(client_id, _NO_CLIENT)
    presented = hashlib.sha256(secret.encode("utf-8")).digest()
    if hmac.compare_digest(expected, presented) and client_id in clients:
        return client_id
    return None


def _form() -> dict[str, list[str]] | None:
    """The form fields of the body, or None when there is no such form."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return None
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return None
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return None
    try:
        return parse_qs(raw.decode("ascii"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None


def introspect() -> Response:
    """``POST {prefix}/access-tokens/introspect``."""
    address = request.remote_addr
    if authenticated_client() is None:
        retry_after = _throttle().hit(address)
        if retry_after is not None:
            return _answer({"error": "too_many_requests"}, 429, **{"Retry-After": str(retry_after)})
        realm = app_state().settings.realm
        return _answer(
            {"error": "invalid_client"}, 401, **{"WWW-Authenticate": f'Basic realm="{realm}"'}
        )
    form = _form()
    tokens = (form or {}).get("token", [])
    if len(tokens) != 1 or not tokens[0]:
        return _answer({"error": "invalid_request"}, 400)
    pipeline = Pipeline.of(current_app)
    try:
        token = pipeline.authenticate(tokens[0], address)
    except StorageUnavailable:
        raise
    except AccessTokenError:  # unknown, revoked, expired, canary, throttled, allow list
        return _answer({"active": False})
    if token.allowed_ips is not None:
        return _answer({"active": False})
    record = _created_at(token.id)
    if record is None:
        return _answer({"active": False})
    pipeline.record_use(token, None)
    body: dict[str, Any] = {
        "active": True,
        "scope": " ".join(sorted(token.granted)),
        "client_id": token.id,
        "token_type": "Bearer",
        "iat": record,
        "sub": token.id,
        "resource": resource_values(token),
    }
    if token.expires_at is not None:
        body["exp"] = int(token.expires_at.timestamp())
    return _answer(body)


def _created_at(token_id: str) -> int | None:
    """When the token was created (``iat``), read from its record."""
    record = app_state().db.session.get(AccessToken, token_id)
    if record is None:
        return None
    return int(record.created_at.timestamp())
