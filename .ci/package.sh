#!/usr/bin/env bash
# Packaging check: build the sdist and the wheel (the wheel from the sdist, as
# pip would), check both, install the wheel into a fresh venv (not editable)
# and import it from outside the checkout, so a file missing from the package
# shows up here rather than on a user's machine. Needs only PyPI.
#
#   bash .ci/package.sh            # with .venv/bin/python, after pip install -e '.[dev]'
#   PYTHON=python3 bash .ci/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1

python=${PYTHON:-.venv/bin/python}
if ! "$python" -c 'import build, twine, check_wheel_contents' 2>/dev/null; then
    "$python" -m pip install -q 'build>=1.2' 'twine>=5' 'check-wheel-contents>=0.6'
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || {
    cat "$work/build.log"
    echo "package.sh: python -m build failed" >&2
    exit 1
}
sdist=$(ls "$work"/dist/*.tar.gz)
wheel=$(ls "$work"/dist/*.whl)
echo "built $(basename "$sdist") and $(basename "$wheel")"

"$python" -m twine check --strict "$sdist" "$wheel"
"$python" -m check_wheel_contents "$wheel"

# The sdist must carry what a rebuild and a reader need.
tar -tzf "$sdist" >"$work/sdist.txt"
for required in LICENSE README.md pyproject.toml flask_accesstokens/py.typed \
    flask_accesstokens/openapi.json; do
    grep -q "^[^/]*/$required\$" "$work/sdist.txt" || {
        echo "package.sh: the sdist lacks $required" >&2
        exit 1
    }
done

# A clean venv, the wheel alone (its dependencies from PyPI), run from an empty
# folder so the checkout cannot be imported by accident.
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
mkdir "$work/elsewhere"
cd "$work/elsewhere"
CHECKOUT="$checkout" "$work/venv/bin/python" - <<'PY'
"""Smoke test of the installed wheel."""

import importlib.metadata
import os
from importlib.resources import files
from pathlib import Path

import flask_accesstokens

installed = Path(flask_accesstokens.__file__).resolve()
checkout = Path(os.environ["CHECKOUT"]).resolve()
assert checkout not in installed.parents, f"imported from the checkout: {installed}"
assert "site-packages" in installed.parts, installed

package = files("flask_accesstokens")
required = [
    "py.typed",
    "openapi.json",
    "static/accesstokens.css",
    "static/accesstokens.js",
    "templates/accesstokens/base.html",
    "templates/accesstokens/list.html",
    "templates/accesstokens/new.html",
    "templates/accesstokens/reveal.html",
    "migrations/__init__.py",
    "migrations/versions/__init__.py",
]
missing = [name for name in required if not package.joinpath(name).is_file()]
assert not missing, f"missing from the wheel: {missing}"

# Every file of the checkout's package directories is in the wheel too, so a
# template or migration added later cannot be forgotten by a package-data glob.
source = checkout / "flask_accesstokens"
for folder in ("templates", "static", "migrations"):
    for path in (source / folder).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            name = path.relative_to(source).as_posix()
            assert package.joinpath(name).is_file(), f"missing from the wheel: {name}"
versions = [p.name for p in package.joinpath("migrations/versions").iterdir()]
assert any(v.endswith(".py") and v != "__init__.py" for v in versions), versions

import json

json.loads(package.joinpath("openapi.json").read_text(encoding="utf-8"))

meta = importlib.metadata.metadata("Flask-AccessTokens")
assert meta["License-Expression"] == "BSD-3-Clause" or meta["License"] == "BSD-3-Clause", meta
dist = importlib.metadata.distribution("Flask-AccessTokens")
assert any(Path(str(f)).name == "LICENSE" for f in dist.files or []), "no LICENSE in the wheel"

# The extension works from the installed files: tables, a token, a request.
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_accesstokens import AccessTokens
from flask_accesstokens import require_scope

app = Flask(__name__)
app.config.update(SECRET_KEY="smoke", SQLALCHEMY_DATABASE_URI="sqlite://")
db = SQLAlchemy(app)
tokens = AccessTokens(app, db=db)


@app.get("/repositories/<workspace>/<repo_slug>")
@require_scope("repository")
def repository(workspace: str, repo_slug: str) -> dict[str, str]:
    return {"repository": repo_slug}


with app.app_context():
    db.create_all()
    new = tokens.create_token(name="smoke", workspace="acme", repository="api", scopes=["repository"])
client = app.test_client()
ok = client.get("/repositories/acme/api", headers={"Authorization": f"Bearer {new.secret}"})
assert ok.status_code == 200, ok.status_code
assert client.get("/repositories/acme/api").status_code == 401
print(f"installed wheel OK: {installed.parent}")
PY
echo "package check passed"
