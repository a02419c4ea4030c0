"""The shipped Alembic migrations, as an app uses them through Flask-Migrate:
they build exactly the models' schema, round-trip, and live beside the app's
own history without touching it. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask import jsonify
from flask_sqlalchemy import SQLAlchemy
from helpers import bearer
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope
from flask_accesstokens import tokenformat
from flask_accesstokens.migrations import BRANCH_LABEL
from flask_accesstokens.migrations import include_migrations
from flask_accesstokens.migrations import VERSIONS
from flask_accesstokens.models import Base
from flask_accesstokens.tokenformat import new_id

# Flask-Migrate's generated env.py still calls db.get_engine() first.
pytestmark = pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")

TABLES = {
    "accesstokens_token",
    "accesstokens_secret",
    "accesstokens_event",
    "accesstokens_notice",
    "accesstokens_trust_policy",
    "accesstokens_oidc_replay",
    "accesstokens_scope_use",
    "accesstokens_resource_use",
}


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Flask-Migrate's env.py runs ``logging.config.fileConfig``, which
    replaces the root handlers and disables every existing logger; put them
    back so later tests still see the extension's log records."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    loggers = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(lg, lg.disabled, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    yield
    root.setLevel(saved_root[0])
    root.handlers[:] = saved_root[1]
    for lg, disabled, level, handlers, propagate in saved:
        lg.disabled, lg.level, lg.propagate = disabled, level, propagate
        lg.handlers[:] = handlers


@pytest.fixture(autouse=True)
def package_untouched() -> Iterator[None]:
    """No test may write a revision into the installed package."""
    before = sorted(p.name for p in VERSIONS.iterdir())
    yield
    assert sorted(p.name for p in VERSIONS.iterdir()) == before


class Migrating:
    """A host app with Flask-Migrate, its own ``User`` model and its own
    migrations directory, not yet initialised."""

    def __init__(self, database_uri: str, directory: Path) -> None:
        self.directory = str(directory)
        self.app = app = Flask(__name__)
        app.config.update(SQLALCHEMY_DATABASE_URI=database_uri, SECRET_KEY="migrations")
        self.db = db = SQLAlchemy()

        class User(db.Model):  # type: ignore[name-defined,misc]
            __tablename__ = "app_user"
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str] = mapped_column(sa.String(80))

        db.init_app(app)
        self.tokens = AccessTokens(app, db=db)
        migrate = flask_migrate.Migrate(app, db, directory=self.directory)
        migrate.configure(include_migrations)

        @app.get("/repositories/<workspace>/<repo_slug>")
        @require_scope("repository")
        def repository(workspace: str, repo_slug: str) -> Any:
            return jsonify(ok=True)

    def tables(self) -> set[str]:
        return set(sa.inspect(self.db.engine).get_table_names())

    def diffs(self, metadata: sa.MetaData) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))

    def dispose(self) -> None:
        with self.app.app_context():
            AccessTokens.dispose_connections()
            self.db.engine.dispose()


@pytest.fixture
def host(database_uri: str, tmp_path: Path) -> Iterator[Migrating]:
    host = Migrating(database_uri, tmp_path / "migrations")
    with host.app.app_context():
        flask_migrate.init(directory=host.directory)
        yield host
    host.dispose()


def test_upgrade_builds_exactly_the_models_schema(host: Migrating) -> None:
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")

    assert TABLES <= host.tables()
    assert host.diffs(Base.metadata) == []
    ours = sa.MetaData()
    for name in TABLES:
        host.db.metadata.tables[name].to_metadata(ours)
    assert host.diffs(ours) == []


def test_round_trip_keeps_working(host: Migrating) -> None:
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    new = host.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    client = host.app.test_client()
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 200
    host.db.session.remove()
    host.dispose()

    flask_migrate.downgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@base")
    assert not TABLES & host.tables()

    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    assert host.diffs(Base.metadata) == []
    # The tables are new and empty: the old secret is unknown, not an error.
    assert client.get("/repositories/acme/api", headers=bearer(new.secret)).status_code == 401
    again = host.tokens.create_token(
        name="CI", workspace="acme", repository="api", scopes=["repository"]
    )
    assert client.get("/repositories/acme/api", headers=bearer(again.secret)).status_code == 200


def test_tokens_older_than_usage_tracking_are_tracked_from_the_upgrade(host: Migrating) -> None:
    """From the schema before observed use: a token made then reports its
    usage since the upgrade, not "never needed" since its creation."""
    flask_migrate.upgrade(directory=host.directory, revision="d8f2b3c4e561")
    created = datetime(2026, 1, 1)
    old = new_id()
    with host.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accesstokens_token (id, name, type, workspace, scopes, hint,"
                " created_at) VALUES (:id, 'CI', 'workspace', 'acme', 'repository',"
                " 'abcd', :created)"
            ),
            {"id": old, "created": created},
        )
    before = datetime.now(timezone.utc)
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    assert host.diffs(Base.metadata) == []
    usage = host.tokens.service().usage(old)
    assert usage is not None
    assert usage.since >= before.replace(microsecond=0)
    assert usage.remove_scopes == ("repository",)
    new = host.tokens.create_token(name="new", workspace="acme", scopes=["repository"])
    fresh = host.tokens.token_usage(new.token.id)
    assert fresh is not None and fresh.since == new.token.created_at


def test_lives_beside_the_apps_own_history(host: Migrating) -> None:
    """The documented workflow: apply the extension's branch, autogenerate
    the app's first revision on a branch of its own, upgrade ``heads``."""
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    app_versions = Path(host.directory) / "versions"
    flask_migrate.migrate(
        directory=host.directory,
        message="users",
        head="base",
        branch_label="app",
        version_path=str(app_versions),
    )
    (revision,) = app_versions.glob("*.py")
    source = revision.read_text()
    assert "app_user" in source
    assert "accesstokens" not in source  # already migrated, so not autogenerated again

    flask_migrate.upgrade(directory=host.directory, revision="heads")
    assert host.tables() >= TABLES | {"app_user"}
    assert host.diffs(host.db.metadata) == []

    flask_migrate.downgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@base")
    assert host.tables() & (TABLES | {"app_user"}) == {"app_user"}
    flask_migrate.upgrade(directory=host.directory, revision="heads")
    assert host.diffs(host.db.metadata) == []


def test_every_revision_is_on_the_extension_branch() -> None:
    """A future revision that left the branch would tangle with apps' histories."""
    config = Config()
    config.set_main_option("script_location", str(VERSIONS.parent))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(VERSIONS))
    script = ScriptDirectory.from_config(config)
    revisions = list(script.walk_revisions())
    assert revisions
    assert len(script.get_bases()) == 1
    assert len(script.get_heads()) == 1
    for revision in revisions:
        assert BRANCH_LABEL in revision.branch_labels


def test_include_keeps_the_apps_locations(tmp_path: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    assert include_migrations(config).get_version_locations_list() == [
        str(tmp_path / "versions"),
        str(VERSIONS),
    ]

    config = Config()
    config.set_main_option("script_location", str(tmp_path))
    config.set_main_option("path_separator", "space")
    config.set_main_option("version_locations", "/a /b")
    include_migrations(config)
    include_migrations(config)  # idempotent
    assert config.get_version_locations_list() == ["/a", "/b", str(VERSIONS)]


#: The last revision of the second round: its schema held workspace, project
#: and repository columns.
SECOND_ROUND_HEAD = "d8f2b3c4e561"


def test_upgrade_from_the_second_round_keeps_live_tokens(host: Migrating) -> None:
    """Tokens made on the second round's schema keep working after the
    resource-model migration, bound to the same resources, and a downgrade
    gives the three columns back."""
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@{SECOND_ROUND_HEAD}")
    state = host.app.extensions["accesstokens.state"]
    rows = {
        "repository": ("acme", None, "api"),
        "project": ("acme", "API", None),
        "workspace": ("acme", None, None),
    }
    secrets: dict[str, str] = {}
    with host.db.engine.begin() as conn:
        for kind, (workspace, project, repository) in rows.items():
            secret = tokenformat.generate(state.settings.token_prefix)
            token_id = tokenformat.new_id()
            secrets[kind] = secret
            conn.execute(
                sa.text(
                    "INSERT INTO accesstokens_token (id, name, type, workspace, project,"
                    " repository, scopes, hint, created_at, generation, canary,"
                    " new_clients_count) VALUES (:id, :name, :type, :w, :p, :r, :scopes,"
                    " 'hint', :now, 0, :false, 0)"
                ),
                {
                    "id": token_id, "name": kind, "type": kind, "w": workspace, "p": project,
                    "r": repository, "scopes": "repository", "now": datetime(2026, 1, 1),
                    "false": False,
                },
            )  # fmt: skip
            conn.execute(
                sa.text(
                    "INSERT INTO accesstokens_secret (digest, token_id, created_at)"
                    " VALUES (:d, :id, :now)"
                ),
                {"d": state.digester.digest(secret), "id": token_id, "now": datetime(2026, 1, 1)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO accesstokens_event (at, action, token_id, workspace, project,"
                    " repository, count) VALUES (:now, 'created', :id, :w, :p, :r, 1)"
                ),
                {"now": datetime(2026, 1, 1), "id": token_id, "w": workspace, "p": project,
                 "r": repository},
            )  # fmt: skip
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    assert host.diffs(Base.metadata) == []
    client = host.app.test_client()
    assert (
        client.get("/repositories/acme/api", headers=bearer(secrets["repository"])).status_code
        == 200
    )
    assert (
        client.get("/repositories/acme/api", headers=bearer(secrets["workspace"])).status_code
        == 200
    )
    assert (
        client.get("/repositories/acme/web", headers=bearer(secrets["repository"])).status_code
        == 403
    )
    listed = host.tokens.list_tokens("acme", repository="api")
    assert [t.resource for t in listed] == [{"workspace": "acme", "repository": "api"}]
    assert [t.resource for t in host.tokens.list_tokens("acme", project="API")] == [
        {"workspace": "acme", "project": "API"}
    ]
    subtree = host.tokens.search_tokens("acme", exact=False)
    assert {t.type for t in subtree.items} == {"repository", "project", "workspace"}
    events = [e for e in host.tokens.audit_events() if e.action == "created"]
    assert {(e.workspace, e.project, e.repository) for e in events} == set(rows.values())
    host.db.session.remove()
    host.dispose()

    flask_migrate.downgrade(
        directory=host.directory, revision=f"{BRANCH_LABEL}@{SECOND_ROUND_HEAD}"
    )
    with host.db.engine.connect() as conn:
        back = conn.execute(
            sa.text("SELECT type, workspace, project, repository FROM accesstokens_token")
        ).all()
    assert {row[0]: tuple(row[1:]) for row in back} == rows


def test_trust_policies_upgrade_from_the_canaries_revision(host: Migrating) -> None:
    """An app at the second round's head gains the OIDC tables and the
    ``policy_id`` column, keeps its tokens, and can go back."""
    flask_migrate.upgrade(directory=host.directory, revision="d8f2b3c4e561")
    assert "accesstokens_trust_policy" not in host.tables()
    with host.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accesstokens_token (id, name, type, workspace, scopes, hint,"
                " created_at, generation, canary, new_clients_count)"
                " VALUES ('0123456789abcdef0123456789abcdef', 'old', 'workspace', 'acme',"
                " 'repository', 'abcd', '2026-01-01 00:00:00', 0, false, 0)"
            )
        )
    flask_migrate.upgrade(directory=host.directory, revision=f"{BRANCH_LABEL}@head")
    assert {"accesstokens_trust_policy", "accesstokens_oidc_replay"} <= host.tables()
    assert host.diffs(Base.metadata) == []
    old = host.tokens.get_token("0123456789abcdef0123456789abcdef")
    assert old is not None and old.policy_id is None
    host.db.session.remove()

    flask_migrate.downgrade(directory=host.directory, revision="d8f2b3c4e561")
    assert "accesstokens_trust_policy" not in host.tables()
    columns = {c["name"] for c in sa.inspect(host.db.engine).get_columns("accesstokens_token")}
    assert "policy_id" not in columns and "canary" in columns
