#!/usr/bin/env bash
# Honest floors: every minimum version pyproject.toml declares (flask>=,
# sqlalchemy>=, the extras' floors) must work. Install the lowest versions the
# metadata allows for the runtime dependencies and the user-facing extras
# (uv's lowest-direct resolution), then run a representative part of the
# suite on them: the request path, errors, config, the management API and
# admin pages, the CLI, migrations, rate limiting and async views.
#
# Floors this found: flask 3.0 (the admin pages set request.max_content_length,
# settable since 3.1), alembic 1.12 (no Config.get_version_locations_list before
# 1.16; 1.16.0's init ignores Flask-Migrate's templates), flask-migrate 4.0
# (its init fails on alembic 1.16), asgiref 3.2.0 (async views lose the app
# context).
#
# Python's floor (requires-python) is checked by resolving the same lowest
# set for the oldest Python it allows, since only one interpreter is
# installable here; mypy (python_version) and ruff (target-version) check the
# code against that version in the main CI steps.
#
# Uses the services .ci/run started (ACCESSTOKENS_TEST_POSTGRESQL_URL,
# ACCESSTOKENS_TEST_REDIS_URL) when they are set.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

extras="admin,postgresql,ratelimit,migrations,async"
test_tools=("pytest>=8" "hypothesis>=6.100")
venv="${ACCESSTOKENS_FLOORS_VENV:-.venv-floors}"

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q uv
uv="$venv/bin/uv"

# Python's floor: the lowest set resolves for the oldest Python allowed.
oldest=$(sed -n 's/^requires-python = ">=\([0-9.]*\)".*/\1/p' pyproject.toml)
extra_args=()
for extra in ${extras//,/ }; do extra_args+=(--extra "$extra"); done
"$uv" pip compile -q --python-version "$oldest" --resolution lowest-direct \
    "${extra_args[@]}" pyproject.toml -o /dev/null

"$uv" pip install -q --python "$venv/bin/python" --resolution lowest-direct \
    -e ".[$extras]" "${test_tools[@]}"
echo "floors: $("$uv" pip list --python "$venv/bin/python" 2>/dev/null \
    | grep -iE '^(flask|werkzeug|flask-sqlalchemy|sqlalchemy|itsdangerous|blinker|limits|cryptography|flask-wtf|psycopg|alembic|flask-migrate|asgiref) ' \
    | awk '{printf "%s==%s ", $1, $2}')"

# Everything on SQLite; the request path, the management API and the
# migrations on PostgreSQL too (psycopg's floor). About three minutes.
pytest=("$venv/bin/python" -m pytest -q -p no:cacheprovider)
"${pytest[@]}" -k "not postgresql" \
    tests/test_protect.py \
    tests/test_credentials.py \
    tests/test_errors.py \
    tests/test_config.py \
    tests/test_state.py \
    tests/test_scope_headers.py \
    tests/test_cookies.py \
    tests/test_web.py \
    tests/test_api.py \
    tests/test_admin.py \
    tests/test_cli.py \
    tests/test_migrations.py \
    tests/test_ratelimit.py \
    tests/test_async.py \
    tests/test_tokenformat.py \
    tests/test_scopes.py
"${pytest[@]}" -k "postgresql" tests/test_protect.py tests/test_api.py tests/test_migrations.py
