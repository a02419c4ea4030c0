"""Hypothesis fuzzing of everything an attacker controls: the Authorization
header of protected routes, and the inputs of the management API.

Properties: never a 500 (the test client re-raises any unhandled exception);
never a 200 unless the exact valid token is presented; nothing written by a
request that is refused.

Budget: ``ACCESSTOKENS_FUZZ_EXAMPLES`` cases (default 10,000), shared out
by ``WEIGHTS``, all run on SQLite, so CI runs at least 10,000 cases.
PostgreSQL repeats the management API tests with ``POSTGRESQL_SHARE`` of
their part: what they must survive (NUL bytes, odd Unicode, huge numbers) is
where databases differ. The header tests run on SQLite only: the header is
parsed, and the checksum checked, before any database is asked, and a
well-formed unknown token is one lookup on any database. ``pytest -m slow``
runs the same properties on ``ACCESSTOKENS_FUZZ_SLOW_EXAMPLES`` cases
(default 200,000).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import string
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta
from datetime import timezone
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from helpers import make_app
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from flask_accesstokens import AccessToken
from flask_accesstokens import AccessTokens
from flask_accesstokens import Resource
from flask_accesstokens import tokenformat
from flask_accesstokens.models import TokenEvent
from flask_accesstokens.models import TokenSecret

BUDGET = int(os.environ.get("ACCESSTOKENS_FUZZ_EXAMPLES", "10000"))
SLOW_BUDGET = int(os.environ.get("ACCESSTOKENS_FUZZ_SLOW_EXAMPLES", "200000"))
#: PostgreSQL repeats the management API fuzz with this part of its budget,
#: on top of the full budget SQLite runs.
POSTGRESQL_SHARE = 0.25

#: Share of the budget each test gets. They add up to 1.
WEIGHTS = {
    "raw_header": 0.25,
    "structured_header": 0.35,
    "create": 0.2,
    "list": 0.1,
    "ids": 0.1,
}
assert abs(sum(WEIGHTS.values()) - 1) < 1e-9


#: The default budget in CI, and the large one of ``pytest -m slow``.
BUDGETS = [
    pytest.param(BUDGET, id="ci"),
    pytest.param(SLOW_BUDGET, id="slow", marks=pytest.mark.slow),
]


def fuzz(name: str, budget: float, test: Callable[[st.DataObject], None]) -> None:
    """Run ``test`` on ``budget * WEIGHTS[name]`` generated cases, without
    Hypothesis's example database, so runs save no examples to replay."""

    @settings(
        max_examples=max(1, int(budget * WEIGHTS[name])),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        test(data)

    run()


PROTECTED = "/repositories/acme/api"
API = "/api"
RESOURCES = {
    "repository": "/repositories/acme/api",
    "project": "/workspaces/acme/projects/API",
    "workspace": "/workspaces/acme",
    # A workspace on a plan with repository tokens only.
    "free": "/repositories/hobby/notes",
    "free_project": "/workspaces/hobby/projects/HOB",
}
MANAGER = {"X-Test-User": "alice"}


def with_managers(tokens: AccessTokens) -> None:
    """alice manages acme (premium) and hobby (repository tokens only)."""

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = request.headers.get("X-Test-User")
        return user if user == "alice" and resource.workspace in ("acme", "hobby") else None

    @tokens.allowed_token_types_loader
    def plan(workspace: str) -> tuple[str, ...]:
        if workspace == "acme":
            return ("repository", "project", "workspace")
        return ("repository",)


# -- the Authorization header -------------------------------------------------------


@pytest.fixture
def protected(tmp_path: Any) -> Iterator[tuple[Flask, str]]:
    """A SQLite app and the one valid secret for ``PROTECTED``."""
    app, db, tokens = make_app(f"sqlite:///{tmp_path / 'fuzz.sqlite'}")
    with app.app_context():
        new = tokens.create_token(
            name="CI", workspace="acme", repository="api", scopes=["repository"]
        )
        yield app, new.secret
        db.session.remove()
        tokens.dispose_connections()
        db.engine.dispose()


def accepted(header: str, secret: str) -> bool:
    """The reference: the only headers that may authenticate. Bearer (any
    case) and the exact token, or Basic whose base64 decodes to exactly
    ``x-token-auth:<token>``."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value == secret
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True) == f"x-token-auth:{secret}".encode()
        except (binascii.Error, ValueError):
            return False
    return False


def check_header(app: Flask, secret: str, header: str) -> None:
    # The WSGI environ holds header bytes decoded as latin-1, which is how
    # every server hands them over. Setting it directly also lets through what
    # the test client's header checks would refuse to send (newlines, NUL),
    # and code points no server would produce: the request path must not care.
    response = app.test_client().get(PROTECTED, environ_overrides={"HTTP_AUTHORIZATION": header})
    if accepted(header, secret):
        assert response.status_code == 200, (header, response.status_code, response.data)
        assert response.get_json()["name"] == "CI"
    else:
        assert response.status_code in (400, 401), (header, response.status_code, response.data)
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="api"')
        assert response.get_json()["type"] == "error"
    assert "Set-Cookie" not in response.headers


def as_wsgi(text: str) -> str:
    """What a server puts in the environ for ``text`` sent as UTF-8."""
    return text.encode("utf-8").decode("latin-1")


raw_headers = st.one_of(
    st.text(),
    st.text().map(as_wsgi),
    st.text(st.characters(max_codepoint=255)),
    st.binary().map(lambda b: b.decode("latin-1")),
)


@pytest.mark.parametrize("budget", BUDGETS)
def test_arbitrary_header_text(protected: tuple[Flask, str], budget: int) -> None:
    app, secret = protected
    fuzz("raw_header", budget, lambda data: check_header(app, secret, data.draw(raw_headers)))


SCHEMES = ["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "basic", "BASIC", "Token", "Digest",
           "Negotiate", "OAuth", "", "Bearer:", "Bearer,", "x-token-auth", "JWT"]  # fmt: skip
SEPARATORS = [" ", "  ", "\t", "", ",", ", ", " \t", "\x00", "\u00a0", "=", ":"]
BASE62 = string.digits + string.ascii_letters


@st.composite
def mutated(draw: st.DrawFn, secret: str) -> str:
    """The secret with a few characters flipped, inserted or deleted."""
    text = secret
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "case", "truncate"]))
        char = draw(
            st.one_of(st.sampled_from(BASE62 + "_- \t,.:=/+\x00"), st.characters(codec="utf-8"))
        )
        if op == "flip" and i < len(text):
            text = text[:i] + char + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "delete" and i < len(text):
            text = text[:i] + text[i + 1 :]
        elif op == "case":
            text = text[:i] + text[i:].swapcase()
        else:
            text = text[:i]
    return text


def well_formed(body: str, prefix: str = "bbat") -> str:
    """A token with a valid checksum: passes the shape check, needs a lookup."""
    head = f"{prefix}_{body}"
    return head + tokenformat._checksum(head)


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def credentials(secret: str) -> st.SearchStrategy[str]:
    almost = mutated(secret)
    random_body = st.text(BASE62, min_size=43, max_size=43)
    return st.one_of(
        st.just(secret),
        almost,
        random_body.map(well_formed),
        st.builds(well_formed, st.text(BASE62, max_size=60), st.sampled_from(["bbat", "ghp"])),
        st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
        st.builds(
            lambda u, s: b64(f"{u}:{s}"),
            st.sampled_from(
                ["x-token-auth", "X-Token-Auth", "x-token-auth ", "", "git", "x-token-auth:"]
            ),
            st.one_of(st.just(secret), almost),
        ),
        almost.map(lambda s: b64(f"x-token-auth:{s}")),
        st.just(b64(f"x-token-auth:{secret}")),
        st.builds(
            lambda a, b: f"{a}{b}{secret}",
            st.sampled_from(["", " ", "\t", "\n"]),
            st.sampled_from(["", " ", "\t", "\r\n"]),
        ).map(lambda s: s + " "),
        st.lists(st.one_of(st.just(secret), almost), min_size=2, max_size=4).flatmap(
            lambda parts: st.sampled_from([", ", ",", " ", ", Bearer ", "\t"]).map(
                lambda sep: sep.join(parts)
            )
        ),
        # Huge: around and far past any sane header length.
        st.builds(lambda n: secret * n, st.integers(2, 40)),
        st.builds(lambda c, n: c * n, st.sampled_from("A=_ "), st.integers(1000, 70_000)),
        st.text(max_size=100),
    )


@functools.cache
def structured_headers(secret: str) -> st.SearchStrategy[str]:
    """Built once per secret: building strategies costs more than drawing."""
    return _structured_headers(credentials(secret))


@st.composite
def _structured_headers(draw: st.DrawFn, credentials: st.SearchStrategy[str]) -> str:
    scheme = draw(st.one_of(st.sampled_from(SCHEMES), st.text(max_size=10)))
    separator = draw(st.sampled_from(SEPARATORS))
    credential = draw(credentials)
    header = f"{scheme}{separator}{credential}"
    if draw(st.booleans()):
        header = as_wsgi(header)
    # Only latin-1 reaches a WSGI app; anything else arrives as its UTF-8 bytes.
    return header if all(ord(c) < 256 for c in header) else as_wsgi(header)


@pytest.mark.parametrize("budget", BUDGETS)
def test_structured_headers(protected: tuple[Flask, str], budget: int) -> None:
    app, secret = protected
    headers = structured_headers(secret)
    fuzz("structured_header", budget, lambda data: check_header(app, secret, data.draw(headers)))


def test_the_reference_accepts_what_it_should(protected: tuple[Flask, str]) -> None:
    """The fuzz oracle itself: the valid forms pass, near misses do not."""
    app, secret = protected
    for header in (
        f"Bearer {secret}",
        f"bearer {secret}",
        f"Basic {b64('x-token-auth:' + secret)}",
    ):
        assert accepted(header, secret)
        check_header(app, secret, header)
    for header in (f"Bearer  {secret}", f"Bearer {secret} ", f"Token {secret}", secret,
                   f"Basic {b64('x-token-auth: ' + secret)}", f"Bearer {secret[:-1]}"):  # fmt: skip
        assert not accepted(header, secret)
        check_header(app, secret, header)


# -- the management API -------------------------------------------------------------


@dataclass
class Target:
    """One app for all the examples of a test, and the row counts it should
    have: each example checks that only a 201 added anything."""

    app: Flask
    db: Any
    tokens: AccessTokens
    client: Any
    #: The part of the budget this database gets.
    share: float = 1.0
    rows: tuple[int, ...] = ()
    #: Token ids of the resource under test, and of every other resource.
    own: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    def check_rows(self, created: bool) -> None:
        before, self.rows = self.rows, counts(self.db)
        if created:
            assert self.rows[:2] == (before[0] + 1, before[1] + 1), (before, self.rows)
        else:
            assert self.rows == before, (before, self.rows)


@pytest.fixture
def managed(database_uri: str) -> Iterator[Target]:
    app, db, tokens = make_app(database_uri)
    with_managers(tokens)
    with app.app_context():
        share = POSTGRESQL_SHARE if database_uri.startswith("postgresql") else 1.0
        target = Target(app, db, tokens, app.test_client(), share)
        target.rows = counts(db)
        yield target
        db.session.remove()
        tokens.dispose_connections()
        db.engine.dispose()


def _count(table: Any, *where: Any) -> Any:
    return sa.select(sa.func.count()).select_from(table).where(*where).scalar_subquery()


#: Rows of every table, and how many tokens are revoked, in one query.
COUNTS = sa.select(
    _count(AccessToken),
    _count(TokenSecret),
    _count(TokenEvent),
    _count(AccessToken, AccessToken.revoked_at.is_not(None)),
)


def counts(db: Any) -> tuple[int, ...]:
    with db.engine.connect() as conn:
        return tuple(conn.execute(COUNTS).one())


SCOPE_NAMES = ["repository", "repository:write", "repository:admin", "repository:delete",
               "pullrequest", "pullrequest:write", "webhook", "pipeline", "pipeline:write",
               "pipeline:variable", "runner", "runner:write", "project", "project:admin",
               "account"]  # fmt: skip
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 5, max_value=2**70),
    st.floats(allow_nan=False),
    st.text(),
)
any_json = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
names = st.one_of(
    st.sampled_from(
        [
            "CI",
            "  deploy  ",
            "",
            " ",
            "x" * 255,
            "x" * 256,
            "a\x00b",
            "tab\there",
            "naïve ☃",
            "\u202ereversed",
            "line\nbreak",
            "\ud800",
        ]
    ),
    st.text(max_size=300),
    any_json,
)
scope_lists = st.one_of(
    st.lists(st.sampled_from(SCOPE_NAMES), max_size=5),
    st.lists(st.one_of(st.sampled_from(SCOPE_NAMES), st.text(max_size=20)), max_size=5),
    st.sampled_from(SCOPE_NAMES),
    any_json,
)
offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
datetimes = st.datetimes(
    timezones=st.one_of(st.none(), st.just(timezone.utc), offsets.map(timezone))
)
expiries = st.one_of(
    st.none(),
    datetimes.map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2999-01-01T00:00:00Z",
            "2999-01-01T00:00:00z",
            "2999-01-01",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2000-01-01T00:00:00Z",
            "",
            "Z",
            "now",
            "\x00",
            "2999-01-01T00:00:00+00:00\x00",
        ]
    ),
    any_json,
)
FIELDS = ("name", "scopes", "expires_at")


@st.composite
def create_bodies(draw: st.DrawFn) -> bytes:
    """Mostly objects with our fields (some missing, some extra), sometimes
    any JSON at all, sometimes not JSON."""
    kind = draw(st.sampled_from(["object", "object", "object", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(any_json)).encode()
    body: dict[str, Any] = {}
    for key, strategy in zip(FIELDS, (names, scope_lists, expiries), strict=True):
        if draw(st.integers(0, 5)):
            body[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=10))] = draw(any_json)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode(
        "utf-8", errors="surrogatepass"
    )


CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
]


def _create_test(target: Target, data: st.DataObject) -> None:
    resource = data.draw(st.sampled_from(sorted(RESOURCES)), label="resource")
    body = data.draw(create_bodies(), label="body")
    content_type = data.draw(st.sampled_from(CONTENT_TYPES), label="content_type")
    response = target.client.post(
        f"{API}{RESOURCES[resource]}/access-tokens",
        data=body,
        content_type=content_type,
        headers=MANAGER,
    )
    status = response.status_code
    target.check_rows(created=status == 201)
    assert status in (201, 400, 403, 415), (status, response.data)
    if status == 201:
        created = response.get_json()
        assert created["token"].startswith("bbat_")
        parsed = json.loads(body)
        assert created["name"] == parsed["name"].strip()
        assert set(created["scopes"]) <= set(SCOPE_NAMES)
        assert resource not in ("free_project",)
    else:
        error = response.get_json()["error"]
        assert isinstance(error["message"], str)
        if status == 400:
            assert isinstance(error["fields"], dict)


@pytest.mark.parametrize("budget", BUDGETS)
def test_create_inputs(managed: Target, budget: int) -> None:
    fuzz("create", budget * managed.share, lambda data: _create_test(managed, data))


LIST_PARAMETERS = {
    "page": st.one_of(st.integers(-5, 2_000_000).map(str), st.just("999999999999999999999")),
    "pagelen": st.one_of(st.integers(-5, 200).map(str), st.just("1e3")),
    "state": st.sampled_from(["active", "revoked", "expired", "ACTIVE", "", "all"]),
    "q": st.sampled_from(["CI", "%", "_", "\\", "'", "%_\\", "\x00", "x" * 300]),
    "last_used_before": expiries.filter(lambda v: isinstance(v, str)),
    "never_used": st.sampled_from(["true", "false", "TRUE", "1", "yes", ""]),
}


@st.composite
def list_queries(draw: st.DrawFn) -> dict[str, str] | str:
    if draw(st.integers(0, 9)) == 0:
        # Raw, as a server passes it on: not necessarily valid percent-encoding.
        # ASCII only: Werkzeug itself fails on raw non-UTF-8 bytes in the query
        # string (see test_raw_non_utf8_query_string).
        return draw(st.text(st.characters(max_codepoint=127), max_size=100))
    query: dict[str, str] = {}
    for name, strategy in LIST_PARAMETERS.items():
        choice = draw(st.integers(0, 3))
        if choice == 1:
            query[name] = draw(strategy)
        elif choice == 2:
            query[name] = draw(st.text(max_size=40))
    if draw(st.integers(0, 4)) == 0:
        query[draw(st.text(max_size=10))] = draw(st.text(max_size=10))
    return query


@pytest.fixture
def seeded(managed: Target) -> Target:
    """A few tokens on every resource, some revoked."""
    tokens = managed.tokens
    for resource, kwargs, scopes in (
        ("repository", {"repository": "api"}, ["repository"]),
        ("repository", {"repository": "lib"}, ["pipeline"]),
        ("project", {"project": "API"}, ["project"]),
        ("workspace", {}, ["account"]),
        ("repository", {"repository": "notes"}, ["runner"]),
    ):
        workspace = "hobby" if kwargs.get("repository") == "notes" else "acme"
        for i in range(3):
            new = tokens.create_token(
                name=f"{resource} %_ {i}", workspace=workspace, scopes=scopes, **kwargs
            )
            if i == 1:
                tokens.revoke_token(new.token.id)
            mine = kwargs.get("repository") == "api"
            (managed.own if mine else managed.others).append(new.token.id)
    managed.rows = counts(managed.db)
    return managed


def _list_test(target: Target, data: st.DataObject) -> None:
    resource = data.draw(st.sampled_from(sorted(RESOURCES)), label="resource")
    query = data.draw(list_queries(), label="query")
    url = f"{API}{RESOURCES[resource]}/access-tokens"
    if isinstance(query, str):
        response = target.client.get(
            url, environ_overrides={"QUERY_STRING": query}, headers=MANAGER
        )
    else:
        response = target.client.get(url, query_string=query, headers=MANAGER)
    target.check_rows(created=False)
    assert response.status_code in (200, 400), (response.status_code, response.data)
    page = response.get_json()
    if response.status_code == 400:
        assert page["error"]["fields"]
        return
    assert 1 <= page["pagelen"] <= 100 and len(page["values"]) <= page["pagelen"]
    path = RESOURCES[resource]
    for token in page["values"]:
        assert "token" not in token
        assert path.endswith(token["repository"] or token["project"] or token["workspace"])


@pytest.mark.parametrize("budget", BUDGETS)
def test_list_inputs(seeded: Target, budget: int) -> None:
    fuzz("list", budget * seeded.share, lambda data: _list_test(seeded, data))


@functools.cache
def token_ids(own: tuple[str, ...], others: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Ids that are not this resource's: random, other resources', and near
    misses of its own."""
    mine = st.sampled_from(own)
    return st.one_of(
        st.text(),
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.sampled_from(others),
        mine.map(str.upper),
        mine.map(lambda i: i + "/"),
        mine.map(lambda i: " " + i),
        mine.map(lambda i: i[:-1]),
        st.sampled_from(["", ".", "..", "%00", "\x00", "0" * 10_000, "../../lib/access-tokens"]),
    ).filter(lambda i: i not in own)


def _ids_test(target: Target, data: st.DataObject) -> None:
    token_id = data.draw(token_ids(tuple(target.own), tuple(target.others)), label="token_id")
    method, suffix = data.draw(
        st.sampled_from([("GET", ""), ("DELETE", ""), ("POST", "/rotate"), ("PUT", "")]),
        label="method",
    )
    url = f"{API}{RESOURCES['repository']}/access-tokens/{quote(token_id, safe='')}{suffix}"
    response = target.client.open(url, method=method, headers=MANAGER, json={})
    target.check_rows(created=False)
    # 308: Werkzeug merges the slashes of ``x//rotate`` and redirects.
    assert response.status_code in (404, 405, 308), (response.status_code, response.data)


@pytest.mark.parametrize("budget", BUDGETS)
def test_token_ids(seeded: Target, budget: int) -> None:
    fuzz("ids", budget * seeded.share, lambda data: _ids_test(seeded, data))


def test_raw_non_utf8_query_string(managed: Target) -> None:
    response = managed.client.get(
        f"{API}{RESOURCES['repository']}/access-tokens",
        environ_overrides={"QUERY_STRING": "page=\xff"},
        headers=MANAGER,
    )
    assert response.status_code == 400
