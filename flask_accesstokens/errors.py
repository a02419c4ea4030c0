"""Every exception the extension raises, in one place.

- The request path raises :class:`AccessTokenError` subclasses: Werkzeug
  :class:`~werkzeug.exceptions.HTTPException` s with RFC 6750 challenges and
  Bitbucket-shaped bodies, so an app's ``errorhandler(401)`` or
  ``errorhandler(InvalidToken)`` sees them.
- Management raises :class:`TokenValidationError` (a :class:`ValueError`
  naming the field) and :class:`TokenConflict` (the token's state forbids it).
- Configuration and scope catalogs raise :class:`ValueError` subclasses.

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

    @property
    def data(self) -> dict[str, Any]:
        """The webargs convention, ``{"message": ..., "headers": {...}}``:
        frameworks that render an :class:`HTTPException` in their own shape
        (flask-smorest's error handler) keep these headers, so the answer
        still carries the challenge.

        .. versionadded:: 0.2
        """
        headers = {k: v for k, v in self.get_headers() if k.lower() != "content-type"}
        headers["Cache-Control"] = "no-store"
        return {"message": self.description or "", "headers": headers}


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
        detail = {
            "reason": "insufficient_scope",
            "required": list(self.required),
            "granted": list(self.granted),
        }
        return error_body(self.description or "", detail=detail)


class WrongResource(InsufficientScope):
    """Bound elsewhere. Same answer whether the resource exists or not, and
    worded in the model's words ("This access token is not for this
    project.") so nobody goes looking for a missing scope. The challenge
    header is the scope refusal's, as RFC 6750 has no other code for it."""

    description = "This access token is not for this resource."

    def body(self) -> dict[str, Any]:
        return error_body(self.description or "", detail={"reason": "wrong_resource"})


class AddressNotAllowed(AccessTokenError, Forbidden):
    """A valid token used from an address outside its allow list. Decided
    before scope and binding, so the answer is the same on every route; it
    carries no scope headers and no challenge (a new token cannot help).

    .. versionadded:: 0.2
    """

    description = "This access token cannot be used from your IP address."

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), *self.extra_headers.items()]


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


class TokenValidationError(ValueError):
    """Bad input to a management operation. ``field`` names what was wrong;
    nothing was written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TokenConflict(Exception):
    """The token's state forbids the operation: rotating a revoked, expired
    or canary token, or a rotation that overlapped another. Answered 409."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownScopeError(ValueError):
    """A scope name that the catalog does not define."""


class ConfigurationError(ValueError):
    """A bad ``ACCESSTOKENS_*`` value, found by ``init_app``. ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key} {message}")
        self.key = key


class UnknownResource(TokenValidationError):
    """The app's ``resource_exists`` callback says there is no such resource:
    a token for it would work nowhere. ``field`` is the resource's type."""


class PlanRestriction(TokenValidationError):
    """The workspace's plan does not include this token type.
    ``allowed_types`` says what it does include."""

    def __init__(self, message: str, allowed_types: tuple[str, ...]) -> None:
        super().__init__("type", message)
        self.allowed_types = allowed_types
