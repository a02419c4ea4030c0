"""Two ways to document an ``Api`` that ``init_app`` cannot find (made or
set up after it)."""

from flask import Flask
from flask_smorest import Api

from flask_accesstokens import AccessTokens
from flask_accesstokens.openapi import AccessTokenPlugin


def documented_api(app: Flask, tokens: AccessTokens) -> Api:
    api = Api(app)
    tokens.document_openapi(api)  # one line, after api.init_app(app)
    return api


def api_with_the_plugin(app: Flask) -> Api:
    return Api(app, spec_kwargs={"extra_plugins": [AccessTokenPlugin(app)]})
