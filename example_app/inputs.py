"""Bad input is a 400 (or a 413), never a 500, on every route of the app.

Werkzeug raises on a query string that is not UTF-8 the moment anything
reads ``request.args`` (a ``next`` target, the sign-in redirect's
``full_path``, git's ``service``, a listing's ``q``), and Python's JSON
parser raises ``RecursionError`` on deeply nested arrays. Both are checked
here once, before any view runs, so no view has to remember. Request bodies
are bounded app-wide (``MAX_CONTENT_LENGTH``, 1 MiB: far more than any JSON
body of the 2.0 API needs); git's smart HTTP sets its own, larger limit per
request (``GIT_MAX_PUSH_REQUEST``, ``GIT_MAX_FETCH_REQUEST``).
"""

from __future__ import annotations

from flask import abort
from flask import Flask
from flask import request

#: The default ``MAX_CONTENT_LENGTH``: the bound of every body but git's.
MAX_BODY = 1024 * 1024


def query_is_utf8() -> bool:
    """Whether the query string decodes; Werkzeug would raise later if not."""
    try:
        request.query_string.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def refuse_undecodable_queries() -> None:
    """A before-request hook: 400 for a query string that is not UTF-8."""
    if not query_is_utf8():
        abort(400, description="The query string is not valid UTF-8.")


def init_app(app: Flask) -> None:
    """Check queries before every other hook of the app, the sign-in guard
    included. (``create_app`` sets ``MAX_CONTENT_LENGTH`` to :data:`MAX_BODY`
    by default.)"""
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_undecodable_queries)
