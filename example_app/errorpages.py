"""Error pages: JSON in Bitbucket's shape under /2.0, the app's own layout
everywhere else, so a 403 or a 404 still has the header, the way home and
words a person can act on."""

from __future__ import annotations

from flask import render_template
from flask import request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from . import bitbucket

#: What a person can do about each error, below its description.
ADVICE = {
    401: "Sign in, then try again.",
    403: "Ask a workspace admin if you need access.",
    404: "Check the address, or start again from your workspaces.",
    405: "This page does not take that kind of request.",
    413: "That was more than this page accepts.",
    429: "Wait a moment, then try again.",
}


def handle_http_error(error: HTTPException) -> Response | HTTPException:
    if request.path.startswith(bitbucket.API_PREFIX):
        return bitbucket.handle_http_error(error)
    response = error.get_response()
    if response.mimetype != "text/html" or error.code is None:
        return error  # git's plain-text answers, and anything already rendered
    response.set_data(
        render_template(
            "error.html",
            code=error.code,
            name=error.name,
            description=error.description,
            advice=ADVICE.get(error.code),
        )
    )
    return response
