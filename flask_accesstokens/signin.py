"""What a visitor of an admin page gets when ``manager_loader`` refuses.

The extension cannot tell "signed out" from "signed in, but not allowed":
both are a None from ``manager_loader``. The app can, so it may register an
``unauthorized_handler``; whatever it returns (typically a redirect to its
sign-in page with ``?next=``) answers the request instead of the 403. It
returns None to keep the 403. The JSON API never asks it: scripts want the
403, not a sign-in page.
"""

from __future__ import annotations

from flask import current_app
from werkzeug.wrappers import Response

from .resources import Resource
from .state import app_state


def unauthorized_response(resource: Resource) -> Response | None:
    """The app's answer to a refused visit of an admin page, or None when the
    app has no handler or keeps the 403."""
    state = app_state()
    handler = state.callbacks.unauthorized_handler
    if handler is None:
        return None
    answer = state.call(handler, resource)
    if answer is None:
        return None
    return current_app.make_response(answer)
