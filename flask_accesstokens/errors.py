"""HTTP errors of protected routes: RFC 6750 challenges, Bitbucket-shaped bodies.

They are Werkzeug :class:`~werkzeug.exceptions.HTTPException` subclasses, so
an app's ``errorhandler(401)`` or ``errorhandler(InvalidToken)`` sees them.
Messages never contain the presented credentials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import Forbidden
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.exceptions import TooManyRequests
from werkzeug.exceptions import Unauthorized
from werkzeug.sansio.response import Response as SansIOResponse


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """Bitbucket's error shape: ``{"type": "error", "error": {...}}``."""
    return {"type": "error", "error": {"message": message, **extra}}


class AccessTokenError(HTTPException):
    """Base of every error the request path raises."""

    #: RFC 6750 error code, or None for a bare challenge.
    error_code: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        realm: str = "api",
        required: Iterable[str] = (),
        granted: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.description)
        self.realm = realm
        self.required = tuple(required)
        self.granted = tuple(granted)
        self.extra_headers = dict(headers or {})

    def challenge(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.error_code:
            parts.append(f"error={_quote(self.error_code)}")
        if self.required:
            parts.append(f"scope={_quote(' '.join(self.required))}")
        return "Bearer " + ", ".join(parts)

    def body(self) -> dict[str, Any]:
        return error_body(self.description or "")

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return json.dumps(self.body())

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        headers = [("Content-Type", "application/json"), ("WWW-Authenticate", self.challenge())]
        headers.extend(self.extra_headers.items())
        return headers

    def get_response(  # type: ignore[override]
        self, environ: Any = None, scope: Any = None
    ) -> SansIOResponse:
        response: SansIOResponse = super().get_response(environ, scope)
        response.headers["Cache-Control"] = "no-store"
        return response


class MissingToken(AccessTokenError, Unauthorized):
    """No access token at all: a bare challenge, as RFC 6750 section 3.1 asks."""

    description = "Authentication required: send an access token as a Bearer token."


class InvalidToken(AccessTokenError, Unauthorized):
    """Unknown, malformed, revoked or expired: deliberately one answer."""

    error_code = "invalid_token"
    description = "The access token is invalid, revoked or expired."


class InvalidRequest(AccessTokenError, BadRequest):
    """The Authorization header cannot be read at all."""

    error_code = "invalid_request"
    description = "The Authorization header is malformed."


class InsufficientScope(AccessTokenError, Forbidden):
    """A valid token that lacks a scope, or is bound to another resource."""

    error_code = "insufficient_scope"
    description = "Your credentials lack one or more required privilege scopes."

    def body(self) -> dict[str, Any]:
        detail = {"required": list(self.required), "granted": list(self.granted)}
        return error_body(self.description or "", detail=detail)


class WrongResource(InsufficientScope):
    """Bound elsewhere. Same answer whether the resource exists or not."""

    description = "This access token does not grant access to this resource."


class TooManyFailures(AccessTokenError, TooManyRequests):
    """Too many failed attempts from this client; ``Retry-After`` says when
    to try again."""

    description = "Too many failed authentication attempts. Try again later."

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), *self.extra_headers.items()]


class StorageUnavailable(AccessTokenError, ServiceUnavailable):
    """The token store could not be asked, so nothing is granted."""

    description = "Access tokens cannot be verified right now. Try again later."

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Retry-After", "5")]
