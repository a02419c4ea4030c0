"""The test app with declared gateway routes, as gunicorn loads it behind
nginx or Caddy::

    gunicorn --chdir tests 'gateway_wsgi:create_app()'

The database URL and extra configuration come from the environment, since
gunicorn builds the app in each worker; the tables must already exist.
"""

from __future__ import annotations

import json
import os

from flask import Flask
from helpers import make_app
from wsgi_app import DATABASE_VARIABLE

from flask_accesstokens import AccessTokens

CONFIG_VARIABLE = "ACCESSTOKENS_TEST_GATEWAY_CONFIG"


def declare(tokens: AccessTokens) -> None:
    """The upstream service's routes."""
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline", methods=["GET"])
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline:write", methods=["POST"])
    tokens.gateway_route("/svc/<workspace>/hooks", "webhook", container=True)


def create_app() -> Flask:
    config = json.loads(os.environ.get(CONFIG_VARIABLE) or "{}")
    app, _, tokens = make_app(os.environ[DATABASE_VARIABLE], **config)
    declare(tokens)
    return app
