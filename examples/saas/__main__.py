"""``python -m examples.saas``: the seeded demo (``demo --port 5000``), and
every ``flask`` command of the app (``access-tokens ...``)."""

from __future__ import annotations

import sys

from flask.cli import FlaskGroup

from .app import create_app

cli = FlaskGroup(create_app=create_app, help="A small SaaS protected with Flask-AccessTokens.")

if __name__ == "__main__":
    cli.main(args=sys.argv[1:] or ["demo"], prog_name="python -m examples.saas")
