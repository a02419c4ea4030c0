"""Alembic migrations for the extension's tables, for apps that use
Flask-Migrate (or Alembic directly).

The revisions live in :data:`VERSIONS` on their own branch, labelled
``accesstokens``, with their own base: they never depend on the app's
revisions, and the app's never need to depend on them. An app adds the
directory to its ``version_locations``; with Flask-Migrate::

    from flask_accesstokens.migrations import include_migrations

    migrate = Migrate(app, db)
    migrate.configure(include_migrations)

then ``flask db upgrade heads`` applies both histories (``heads``, plural:
there are two), and ``flask db downgrade accesstokens@base`` removes the
extension's tables.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

#: The directory holding the extension's revision scripts.
VERSIONS = Path(__file__).with_name("versions")
#: The branch label of the extension's revisions: ``accesstokens@head``.
BRANCH_LABEL = "accesstokens"
#: Alembic's ``path_separator`` values.
_SEPARATORS = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}


def include_migrations(config: Config) -> Config:
    """Add :data:`VERSIONS` to an Alembic config's ``version_locations``,
    keeping the app's own (``<script_location>/versions`` when it has set
    none). Fits Flask-Migrate's ``Migrate.configure`` callback."""
    locations = config.get_version_locations_list()
    if not locations:
        script_location = config.get_main_option("script_location")
        if script_location is None:
            raise ValueError("the Alembic config has no script_location")
        locations = [str(Path(script_location) / "versions")]
    if str(VERSIONS) not in locations:
        locations.append(str(VERSIONS))
    separator = config.get_main_option("path_separator")
    if separator is None:
        separator = "os"
        config.set_main_option("path_separator", separator)
    joiner = _SEPARATORS[separator]
    # ConfigParser interpolation: a literal % is written %%.
    value = joiner.join(locations).replace("%", "%%")
    config.set_main_option("version_locations", value)
    return config
