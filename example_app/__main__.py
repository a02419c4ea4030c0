"""``python -m example_app demo --port 5000``, and every ``flask`` command of the app."""

from __future__ import annotations

from flask.cli import FlaskGroup

from .factory import create_app

cli = FlaskGroup(create_app=create_app, help="The example code host for Flask-AccessTokens.")

if __name__ == "__main__":
    cli(prog_name="python -m example_app")
