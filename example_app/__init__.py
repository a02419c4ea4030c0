"""A small Bitbucket-like code host that shows every feature of Flask-AccessTokens."""

from .factory import create_app as create_app
