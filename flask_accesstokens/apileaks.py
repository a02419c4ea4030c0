"""The management API's routes for leaked tokens: secret scanners' signed
reports, and public revocation by whoever holds a token. Neither needs
anyone's authority; both revoke through the service's leak response.
They join the API's blueprint (``api.py``), with its errors and bounds."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app
from flask import jsonify
from flask import request
from werkzeug.wrappers import Response

from .api import _service
from .api import APIError
from .api import blueprint
from .api import fail
from .api import invalid
from .api import json_body
from .api import MAX_PUBLIC_REVOCATIONS
from .api import PUBLIC_THROTTLE_KEY
from .api import raw_body
from .ratelimit import Throttle
from .scanning import header_names
from .scanning import InvalidReport
from .scanning import MAX_REPORT_BYTES
from .scanning import verify_report
from .service import TokenService
from .state import app_state

_throttle_lock = threading.Lock()


@blueprint.post("/access-tokens/secret-scanning/<provider>")
def secret_scanning(provider: str) -> Response:
    """A secret scanner's signed report: revoke what this app issued and
    answer with GitHub's feedback labels. Signed or nothing: an unsigned,
    mis-signed or malformed report is 400 and revokes nothing."""
    keys_url = app_state().settings.secret_scanning_keys.get(provider)
    if keys_url is None:
        fail(404, "No such secret-scanning provider.")
    body = raw_body(MAX_REPORT_BYTES)
    key_id_header, signature_header = header_names(provider)
    try:
        reported = verify_report(
            provider,
            keys_url,
            body,
            request.headers.get(key_id_header),
            request.headers.get(signature_header),
        )
    except InvalidReport as e:
        fail(400, str(e))
    outcome = _service().report_leaks(
        provider,
        [(entry.token, entry.url) for entry in reported],
        client=provider,
        revoked_by=f"secret scanning: {provider}",
    )
    _service().announce(outcome)
    return jsonify(
        [
            entry.feedback(issued=issued)
            for entry, issued in zip(reported, outcome.issued, strict=True)
        ]
    )


def _public_throttle() -> Throttle:
    """The app's throttle of public revocation, made on first use."""
    extensions = current_app.extensions
    throttle: Throttle | None = extensions.get(PUBLIC_THROTTLE_KEY)
    if throttle is None:
        with _throttle_lock:
            throttle = extensions.get(PUBLIC_THROTTLE_KEY)
            if throttle is None:
                settings = app_state().settings
                throttle = extensions[PUBLIC_THROTTLE_KEY] = Throttle(
                    settings.public_revocation_limit,
                    settings.ratelimit_storage_uri,
                    "accesstokens.public_revocation",
                    settings.ratelimit_ipv6_prefix,
                )
    return throttle


@blueprint.post("/access-tokens/revoke")
def public_revocation() -> tuple[Response, int]:
    """Anyone holding a leaked token may kill it. The answer is the same
    whether any token existed: every token costs its lookup, and the signals
    are sent after the answer."""
    retry_after = _public_throttle().hit_client(request.remote_addr)
    if retry_after is not None:
        error = APIError(429, "Too many revocation requests. Try again later.")
        assert error.response is not None
        error.response.headers["Retry-After"] = str(retry_after)
        raise error
    body = json_body(frozenset({"access_tokens"}))
    sent: Any = body.get("access_tokens")
    if (
        not isinstance(sent, list)
        or not 1 <= len(sent) <= MAX_PUBLIC_REVOCATIONS
        or not all(isinstance(token, str) for token in sent)
    ):
        invalid({"access_tokens": f"required, a list of 1 to {MAX_PUBLIC_REVOCATIONS} tokens"})
    service = _service()
    outcome = service.report_leaks(
        "public",
        [(token, None) for token in sent],
        client=request.remote_addr,
        revoked_by="public revocation",
    )
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def announce() -> None:
        try:
            with app.app_context():
                TokenService.of(app).announce(outcome)
        except Exception:  # noqa: BLE001 - the answer is sent; only the log is left
            app.logger.exception("could not send the signals of a public revocation")

    response = jsonify({})
    response.call_on_close(announce)
    return response, 202
