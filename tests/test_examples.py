"""The README's and the quickstart's code are files under ``examples/``, and
these tests run them as a reader would: copied into an empty folder, the
scripts run with ``python``, then the documented requests made against the app."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from flask_accesstokens import AccessTokens

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = (ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def run(folder: Path, *args: str) -> str:
    """``python <args>`` in ``folder``, as the docs say; its stdout."""
    result = subprocess.run(
        [sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def copy_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Copy an example folder somewhere empty and import its ``app.py`` from
    there, as ``app`` (what the scripts import), so its instance folder is there too."""
    loaded: list[ModuleType] = []

    def copy(name: str) -> tuple[Path, ModuleType]:
        folder = tmp_path / name
        shutil.copytree(EXAMPLES / name, folder)
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.delitem(sys.modules, "app", raising=False)
        module = importlib.import_module("app")
        assert Path(module.app.instance_path) == folder / "instance"
        loaded.append(module)
        return folder, module

    yield copy
    for module in loaded:
        with module.app.app_context():
            AccessTokens.dispose_connections()
            module.db.engine.dispose()
    sys.modules.pop("app", None)


# -- README ----------------------------------------------------------------------


def test_readme_code_blocks_are_the_example_files() -> None:
    blocks = python_blocks(README)
    assert blocks[:2] == [
        (EXAMPLES / "readme" / "app.py").read_text(encoding="utf-8"),
        (EXAMPLES / "readme" / "create_token.py").read_text(encoding="utf-8"),
    ]


def test_readme_begins_with_the_two_commands() -> None:
    first = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first == [
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[example]' "
        "&& .venv/bin/python -m example_app demo",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' "
        "&& .venv/bin/python -m pytest",
    ]
    assert "--port" in README.split("## Install")[0]


def test_readme_example_runs_as_documented(
    copy_of: object, caplog: pytest.LogCaptureFixture
) -> None:
    folder, module = copy_of("readme")  # type: ignore[operator]
    secret, token_id = run(folder, "create_token.py").split()
    assert re.fullmatch(r"bbat_\w+", secret)
    client = module.app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}

    pushed = client.post("/repositories/acme/api/push", headers=bearer)
    assert pushed.status_code == 200
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "a warning on first use"
    assert pushed.get_json() == {"pushed_by": "CI"}
    assert '{"pushed_by":"CI"}' in README

    # The answers the README's table promises.
    missing = client.post("/repositories/acme/api/push")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    wrong = client.post("/repositories/acme/web/push", headers=bearer)
    assert wrong.status_code == 403
    assert 'error="insufficient_scope"' in wrong.headers["WWW-Authenticate"]
    bad = client.post("/repositories/acme/api/push", headers={"Authorization": "Bearer bbat_x"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]

    # The README's revoke line, with the id create_token.py printed.
    line = re.search(r"^\$ (flask --app app access-tokens revoke) \S+$", README, re.MULTILINE)
    assert line is not None
    args = [*shlex.split(line.group(1)), token_id]
    revoked = subprocess.run(
        [sys.executable, "-m", *args], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert revoked.returncode == 0, revoked.stderr
    assert client.post("/repositories/acme/api/push", headers=bearer).status_code == 401


# -- the quickstart ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["app.py", "create_token.py", "revoke_token.py"])
def test_quickstart_includes_the_example_files(name: str) -> None:
    assert f".. literalinclude:: ../examples/quickstart/{name}" in QUICKSTART
    assert (EXAMPLES / "quickstart" / name).is_file()


def test_quickstart_runs_as_documented(copy_of: object) -> None:
    folder, module = copy_of("quickstart")  # type: ignore[operator]
    secret, token_id = run(folder, "create_token.py").split()
    client = module.app.test_client()
    bearer = {"Authorization": f"Bearer {secret}"}

    own = client.get("/repositories/acme/api", headers=bearer)
    assert own.status_code == 200
    assert own.get_data(as_text=True).strip() in QUICKSTART
    assert own.get_json() == {"repository": "acme/api", "token": "CI"}

    for other in ("/repositories/acme/web", "/repositories/acme/nope"):
        refused = client.get(other, headers=bearer)
        assert refused.status_code == 403
        assert f"WWW-Authenticate: {refused.headers['WWW-Authenticate']}" in QUICKSTART

    anonymous = client.get("/repositories/acme/api")
    assert anonymous.status_code == 401
    assert f"WWW-Authenticate: {anonymous.headers['WWW-Authenticate']}" in QUICKSTART
    garbage = client.get("/repositories/acme/api", headers={"Authorization": "Bearer bbat_nope"})
    assert garbage.status_code == 401
    assert f"WWW-Authenticate: {garbage.headers['WWW-Authenticate']}" in QUICKSTART

    basic = client.get(
        "/repositories/acme/api",
        auth=("x-token-auth", secret),  # curl -u "x-token-auth:$TOKEN"
    )
    assert basic.status_code == 200

    run(folder, "revoke_token.py", token_id)
    revoked = client.get("/repositories/acme/api", headers=bearer)
    assert revoked.status_code == 401
    documented = QUICKSTART.rsplit("$ python revoke_token.py", 1)[1].split("\n\n")[0]
    assert json.dumps(revoked.get_json()) in documented


def test_quickstart_cli_line_creates_a_token(copy_of: object) -> None:
    folder, module = copy_of("quickstart")  # type: ignore[operator]
    found = re.search(r"\$ (flask --app app access-tokens create .*?\n.*?)\n", QUICKSTART)
    assert found is not None
    args = shlex.split(found.group(1).replace("\\\n", " "))
    assert args[:3] == ["flask", "--app", "app"]
    result = subprocess.run(
        [sys.executable, "-m", "flask", *args[1:]],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    secret = re.search(r"bbat_\w+", result.stdout)
    assert secret is not None
    response = module.app.test_client().get(
        "/repositories/acme/api", headers={"Authorization": f"Bearer {secret.group(0)}"}
    )
    assert response.status_code == 200
