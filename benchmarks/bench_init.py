"""Setup cost: an app factory called many times (a test suite that builds an
app per test), with the JSON API and the admin pages on.

Interleaved rounds of: a bare ``Flask()`` with Flask-SQLAlchemy, the same
with the extension on Bitbucket's default model, and with a one-level
model. Medians per factory call, and each as a multiple of the bare app.

    python benchmarks/bench_init.py            # 100 calls a round, 7 rounds
    python benchmarks/bench_init.py --calls 50 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import flask_accesstokens as fat

#: As in an app-factory project: the extensions are made once, at import,
#: and ``init_app`` is called for each app.
db = SQLAlchemy()
default_tokens = fat.AccessTokens()
_catalog = fat.ScopeCatalog()
_catalog.register("posts:write")
one_level_tokens = fat.AccessTokens(
    scopes=_catalog, resources=fat.ResourceModel(fat.Level("user", arg="user_id"))
)


def bare() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SQLALCHEMY_DATABASE_URI="sqlite://")
    db.init_app(app)
    return app


def default_model() -> Flask:
    app = bare()
    app.config["ACCESSTOKENS_ADMIN_URL_PREFIX"] = "/settings"
    default_tokens.init_app(app, db=db)
    return app


def one_level() -> Flask:
    app = bare()
    app.config["ACCESSTOKENS_ADMIN_URL_PREFIX"] = "/settings"
    one_level_tokens.init_app(app, db=db)
    return app


def time_calls(factory: Callable[[], Flask], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        factory()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    factories = {"bare": bare, "default model": default_model, "one level": one_level}
    for factory in factories.values():  # warm up imports and caches
        factory()
    times: dict[str, list[float]] = {name: [] for name in factories}
    for _ in range(args.rounds):
        for name, factory in factories.items():
            times[name].append(time_calls(factory, args.calls))
    base = statistics.median(times["bare"])
    for name, values in times.items():
        median = statistics.median(values)
        rules = len(list(factories[name]().url_map.iter_rules()))
        ratio = median / base
        print(f"{name:>14}: {median * 1000:7.2f} ms a call  x{ratio:5.1f} bare  {rules} rules")


if __name__ == "__main__":
    main()
