"""Fuzzed original URIs against the check: never a 500, only answers a
gateway passes on, and never a 200 for a resource outside the token's
binding, judged by an oracle that reads the URI on its own (segment by
segment, decoded once, as a literal upstream would).

2,000 URIs by default; the full 10,000 with ``-m slow``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from flask import Flask
from helpers import bearer

from flask_accesstokens import AccessTokens

CHECK = "/api/access-tokens/check"
SEED = 20261206
#: Pieces of paths: the declared routes' words, other resources' names, and
#: everything upstreams read differently.
PIECES = [
    "svc", "acme", "api", "lib", "hobby", "notes", "builds", "hooks", "API", "WEB",
    "..", ".", "", "%2e%2e", "%2E", ".%2e", "%2F", "%2f", "%5C", "\\", "%00", "%0a",
    "%61pi", "%61cme", "ac%6De", "%252F", "%25", "%", "%zz", ";", ";x=1", "api;", "%3B",
    "jos\xc3\xa9", "jos%C3%A9", "%C3", "%FF", "\xff", "%C2%A0", "?", "#", " ", "%20",
    "a" * 300, "*", "~", "api.", "API", "Api",
]  # fmt: skip
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "get", "PATCH"]
#: (route shape, position of the workspace, position of the repository or
#: None for the container route).
SHAPES = {
    ("svc", None, None, "builds"): (1, 2),
    ("svc", None, "hooks"): (1, None),
}


@pytest.fixture
def database_uri(tmp_path: Path) -> str:
    """SQLite only: the check's reading of URIs is the same on every database."""
    return f"sqlite:///{tmp_path / 'tokens.sqlite'}"


def uris(count: int) -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    found: list[tuple[str, str]] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.4:  # near a declared route, with one or two pieces swapped in
            parts = ["svc", rng.choice(["acme", "hobby"]), rng.choice(["api", "lib"]), "builds"]
            for _ in range(rng.randint(1, 2)):
                parts[rng.randrange(len(parts))] = rng.choice(PIECES)
            if rng.random() < 0.3:
                parts.insert(rng.randrange(len(parts) + 1), rng.choice(PIECES))
        elif kind < 0.55:
            parts = ["svc", rng.choice(["acme", "hobby", "%61cme", "acme%2F..", ".."]), "hooks"]
        else:
            parts = [rng.choice(PIECES) for _ in range(rng.randint(0, 6))]
        uri = "/" + "/".join(parts)
        if rng.random() < 0.1:
            uri = "/" + uri
        if rng.random() < 0.2:
            uri += "?" + rng.choice(["x=1", "a=%2F..%2F", "", "/svc/acme/api/builds"])
        if rng.random() < 0.03:
            uri = uri.lstrip("/")
        found.append((rng.choice(METHODS), uri))
    return found


def literal_segments(uri: str) -> list[str] | None:
    """The oracle: each raw segment decoded once, nothing resolved or merged."""
    path = uri.partition("?")[0]
    try:
        return [unquote_to_bytes(s).decode("utf-8") for s in path.split("/")[1:]]
    except UnicodeDecodeError:
        return None


def inside_binding(uri: str) -> bool:
    """Whether every reading of ``uri`` names acme/api (or acme, for the
    container route), the only resource the fuzzing token is bound to."""
    segments = literal_segments(uri)
    if segments is None:
        return False
    kept = [s for s in segments if s]
    for shape, (workspace, repository) in SHAPES.items():
        if len(kept) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, kept, strict=True)
        ):
            continue
        if kept[workspace] != "acme":
            return False
        return repository is None or kept[repository] == "api"
    return False


def run(app: Flask, tokens: AccessTokens, count: int) -> None:
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline", methods=["GET"])
    tokens.gateway_route("/svc/<workspace>/<repo_slug>/builds", "pipeline:write", methods=["POST"])
    tokens.gateway_route("/svc/<workspace>/hooks", "webhook", container=True)
    secret = tokens.create_token(
        name="fuzz", workspace="acme", repository="api", scopes=["pipeline:write", "webhook"]
    ).secret
    client = app.test_client()
    statuses: dict[int, int] = {}
    allowed: list[tuple[str, str]] = []
    for index, (method, uri) in enumerate(uris(count)):
        headers: dict[str, Any] = {"X-Forwarded-For": "198.51.100.7", **bearer(secret)}
        form = index % 3
        if form == 0:
            headers |= {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
        elif form == 1:
            headers |= {"X-Original-Method": method, "X-Original-URI": uri}
        if form == 2:
            if not uri.startswith("/") or "#" in uri or not uri.isascii() or " " in uri:
                continue  # not something a request line carries
            response = client.open(CHECK + uri, method=method.upper(), headers=headers)
        else:
            try:
                response = client.get(CHECK, headers=headers)
            except (UnicodeEncodeError, ValueError):
                continue  # not a header value: no gateway sends it
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 200:
            allowed.append((method, uri))
    assert set(statuses) <= {200, 401, 403}, statuses
    outside = [(m, u) for m, u in allowed if not inside_binding(u)]
    assert outside == []
    assert statuses.get(200, 0) > count // 50, statuses  # the fuzz reached allowed requests
    assert statuses.get(403, 0) > count // 4, statuses


def test_fuzzed_original_uris(app: Flask, tokens: AccessTokens) -> None:
    run(app, tokens, 2_000)


@pytest.mark.slow
def test_fuzzed_original_uris_full(app: Flask, tokens: AccessTokens) -> None:
    run(app, tokens, 10_000)


def test_the_oracle() -> None:
    assert inside_binding("/svc/acme/api/builds?x")
    assert inside_binding("/svc//acme/api/builds")
    assert inside_binding("/svc/acme/hooks")
    assert not inside_binding("/svc/hobby/api/builds")
    assert not inside_binding("/svc/acme/x/../api/builds")
    assert not inside_binding("/svc/acme%2Fapi/builds")
    assert not inside_binding("/svc/acme/lib/builds")
