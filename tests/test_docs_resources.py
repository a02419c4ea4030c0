"""``docs/resources.rst`` holds no code of its own: every block is a
``literalinclude`` of a file the tests import and run (``examples/saas``,
through ``test_example_saas.py``, or the extension's own source), and its
inline CLI line is run here. So nothing on the page is untested."""

from __future__ import annotations

import importlib
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from helpers import bearer

from examples.saas.app import create_app
from examples.saas.demo import seed
from examples.saas.models import db
from flask_accesstokens import AccessTokens
from flask_accesstokens.requirements import requirement_of

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGE = (DOCS / "resources.rst").read_text(encoding="utf-8")


def includes(page: str) -> list[tuple[Path, dict[str, str]]]:
    """Each ``literalinclude``: its file and options."""
    found = []
    for match in re.finditer(
        r"^\.\. literalinclude:: (\S+)\n((?:    :[\w-]+:.*\n)*)", page, flags=re.MULTILINE
    ):
        options = dict(re.findall(r"    :([\w-]+):[ ]?(.*)", match.group(2)))
        found.append(((DOCS / match.group(1)).resolve(), options))
    return found


INCLUDES = includes(PAGE)


def module_of(path: Path) -> Any:
    dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return importlib.import_module(dotted)


def test_the_page_has_no_code_of_its_own() -> None:
    directives = re.findall(r"^\s*\.\. ([\w:-]+)::", PAGE, flags=re.MULTILINE)
    assert "literalinclude" in directives
    assert not {"code-block", "code", "sourcecode", "include"} & set(directives)
    # No literal blocks either: no paragraph ending in "::".
    literal = [line for line in PAGE.splitlines() if line.rstrip().endswith("::")]
    assert [line for line in literal if not line.lstrip().startswith(".. ")] == []
    assert len(INCLUDES) >= 12


@pytest.mark.parametrize(("path", "options"), INCLUDES, ids=[f"{p.name}:{o}" for p, o in INCLUDES])
def test_each_block_is_source_the_tests_import(path: Path, options: dict[str, str]) -> None:
    assert path.is_file()
    relative = path.relative_to(ROOT).parts
    assert relative[:2] == ("examples", "saas") or relative[0] == "flask_accesstokens"
    module = module_of(path)
    assert Path(inspect.getsourcefile(module) or "") == path
    text = path.read_text(encoding="utf-8")
    if "pyobject" in options:
        found: Any = module
        for part in options["pyobject"].split("."):
            found = getattr(found, part)
        assert callable(found)
    for key in ("start-after", "end-before", "start-at", "end-at"):
        if key in options:
            assert options[key] in text, (key, options[key])


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'docs.sqlite'}",
            "SECRET_KEY": "docs",
            "TESTING": True,
        }
    )
    with app.app_context():
        seed()
        yield app
        AccessTokens.dispose_connections()
        db.session.remove()
        db.engine.dispose()


def test_the_included_views_are_the_apps_routes(app: Flask) -> None:
    """What the page shows of ``views.py`` is what the app serves, with the
    options the page explains."""
    shown = {o["pyobject"] for p, o in INCLUDES if p.name == "views.py"}
    assert shown == {
        "list_items",
        "show_item",
        "list_templates",
        "list_projects",
        "delete_project",
    }
    requirements = {
        endpoint.split(".")[-1]: requirement_of(view)
        for endpoint, view in app.view_functions.items()
    }
    assert all(requirements[name] is not None for name in shown)
    assert requirements["show_item"].resource is not None  # type: ignore[union-attr]
    assert requirements["list_templates"].bind is False  # type: ignore[union-attr]
    assert requirements["list_projects"].container is True  # type: ignore[union-attr]


def test_the_pages_cli_line_runs(app: Flask) -> None:
    found = re.search(r"``(flask --app examples\.saas\.app access-tokens create [^`]+)``", PAGE)
    assert found is not None
    args = shlex.split(found.group(1))
    assert args[:3] == ["flask", "--app", "examples.saas.app"]
    result = app.test_cli_runner().invoke(args=args[3:])
    assert result.exit_code == 0, result.output
    secret = re.search(r"bbat_\w+", result.output)
    assert secret is not None
    client = app.test_client()
    own = client.get("/organizations/7/projects/42/items", headers=bearer(secret.group(0)))
    assert own.status_code == 200
    other = client.get("/organizations/7/projects/43/items", headers=bearer(secret.group(0)))
    assert other.status_code == 403


def test_the_pages_paths_are_served(app: Flask) -> None:
    """The management URLs the page names exist in the example app."""
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    levels = {"organizations": "organization", "projects": "project"}
    paths = re.findall(r"``(/(?:api|settings)/organizations/[^`]*access-tokens)``", PAGE)
    assert len(paths) >= 3
    for path in paths:
        rule = re.sub(
            r"/(organizations|projects)/\d+",
            lambda m: f"/{m[1]}/<accesstokens_name:{levels[m[1]]}>",
            path,
        )
        assert rule in rules, path
