"""A secret is shown once, by the response that creates it, and nowhere else.

One scenario uses every surface (the Python API, protected routes, the
management API, the CLI, the admin pages) with valid, revoked, rotated-out,
malformed and well-formed-but-unknown tokens, and records everything an
operator, an attacker or a log shipper could see:

- log records of every logger at DEBUG, SQL statements with their parameters
  included (SQLAlchemy's and the request path's raw driver queries);
- every signal's arguments;
- every row of every table, all columns;
- every response's status, headers (cookies decoded) and body;
- exception messages, reprs and tracebacks; reprs of returned objects;
- CLI output.

Then no secret, no recognisable piece of one (its random part without the
prefix, any 8 characters of it, its base64 forms), appears anywhere except in
the few places that exist to reveal it. Those places are checked to hold it,
so the test would notice if the recording missed them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import blinker
import pytest
import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask import request
from flask import session
from flask_sqlalchemy import SQLAlchemy
from helpers import basic
from helpers import bearer
from helpers import make_app

from flask_accesstokens import AccessTokens
from flask_accesstokens import InvalidToken
from flask_accesstokens import Resource
from flask_accesstokens import signals
from flask_accesstokens import tokenformat
from flask_accesstokens.models import TokenEvent
from flask_accesstokens.pipeline import Pipeline
from flask_accesstokens.serialize import token_json

ADMIN = "/settings"
API = "/api"
REPO = "/repositories/acme/api"
ALICE = {"X-Test-User": "alice"}
WINDOW = 8


@dataclass
class Recorder:
    """Everything seen, as (where, text); and where each secret may be."""

    seen: list[tuple[str, str]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    #: Presented by clients but never issued: must never be echoed either.
    probes: list[str] = field(default_factory=list)
    #: where -> the secrets that place exists to reveal.
    reveals: dict[str, set[str]] = field(default_factory=dict)

    def add(self, where: str, value: Any) -> None:
        self.seen.append((where, value if isinstance(value, str) else repr(value)))

    def response(self, where: str, response: Any, app: Flask, reveals: str | None = None) -> Any:
        self.add(f"{where}: status", response.status)
        for name, value in response.headers.items():
            self.add(f"{where}: header {name}", value)
            if name.lower() == "set-cookie":
                self.add(f"{where}: cookie", decode_cookie(app, value))
        self.add(f"{where}: body", response.get_data(as_text=True))
        if reveals is not None:
            self.reveals.setdefault(f"{where}: body", set()).add(reveals)
        return response

    def issued(self, secret: str) -> str:
        assert secret.startswith("bbat_") and secret not in self.secrets
        self.secrets.append(secret)
        return secret


def decode_cookie(app: Flask, header: str) -> str:
    """The session, as anyone holding the cookie can read it: signed is not
    encrypted."""
    name, _, rest = header.partition("=")
    value = rest.split(";", 1)[0]
    if name != app.config.get("SESSION_COOKIE_NAME", "session") or not value:
        return ""
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return repr(serializer.loads(value))


def pieces(secret: str) -> list[str]:
    """What would give a secret away: itself, its random part, any window of
    it, and the base64 a Basic header carries."""
    body = secret.split("_", 1)[1]
    found = [secret, body, base64.b64encode(secret.encode()).decode()]
    found.append(base64.b64encode(f"x-token-auth:{secret}".encode()).decode())
    found += [body[i : i + WINDOW] for i in range(len(body) - WINDOW + 1)]
    return found


# -- the app and the recording -------------------------------------------------------


@pytest.fixture
def recorder(caplog: pytest.LogCaptureFixture) -> Recorder:
    caplog.set_level(logging.DEBUG)
    for name in ("werkzeug", "flask_accesstokens", "sqlalchemy.engine", "sqlalchemy.pool"):
        caplog.set_level(logging.DEBUG, logger=name)
    return Recorder()


@pytest.fixture
def parts(
    recorder: Recorder, database_uri: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Flask, SQLAlchemy, AccessTokens]]:
    app, db, tokens = make_app(database_uri, ACCESSTOKENS_ADMIN_URL_PREFIX=ADMIN)

    @app.get("/test-login")
    def login() -> str:
        session["user"] = request.args["user"]
        return "signed in"

    @tokens.manager_loader
    def manager(resource: Resource) -> str | None:
        user = request.headers.get("X-Test-User") or session.get("user")
        return user if user == "alice" and resource.workspace in ("acme", "hobby") else None

    # Every signal, every argument.
    def receive(name: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            recorder.add(f"signal {name}", kwargs)
            for value in kwargs.values():
                recorder.add(f"signal {name}", describe(value))

        return receiver

    connected = []
    for name, value in vars(signals).items():
        if isinstance(value, blinker.NamedSignal):
            receiver = receive(name)
            value.connect(receiver, app)
            connected.append((value, receiver))  # held here: blinker holds them weakly

    # Every SQL statement and its parameters, whichever way it is sent.
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record_sql(recorder))
    lookup = Pipeline.of(app).store
    real_find = lookup.find

    def find(digests: list[str]) -> Any:
        # The request path's query runs on raw driver connections, which
        # SQLAlchemy's events do not see: record what it is asked instead.
        recorder.add("sql lookup", digests)
        return real_find(digests)

    monkeypatch.setattr(lookup, "find", find)

    with app.app_context():
        yield app, db, tokens
        db.session.remove()
        tokens.dispose_connections()
        db.engine.dispose()
    for signal, receiver in connected:
        signal.disconnect(receiver, app)


def record_sql(recorder: Recorder) -> Any:
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        recorder.add("sql", (statement, parameters))

    return before


def describe(value: Any) -> str:
    """A value with everything it holds: reprs, and every mapped column."""
    text = repr(value)
    if hasattr(value, "__table__"):
        mapper = sa.inspect(value).mapper
        text += repr({c.key: getattr(value, c.key) for c in mapper.column_attrs})
    elif hasattr(value, "_asdict"):
        text += repr(value._asdict())
    return text


# -- the scenario ----------------------------------------------------------------------


def use_python_api(rec: Recorder, app: Flask, tokens: AccessTokens) -> dict[str, str]:
    new = tokens.create_token(
        name="Deploy", workspace="acme", repository="api", scopes=["repository:write"]
    )
    secret = rec.issued(new.secret)
    for shown in (repr(new), str(new), f"{new}", f"{new} {new!r}", describe(new.token)):
        rec.add("python: NewToken", shown)
    rec.add("python: token_json", json.dumps(token_json(new.token)))
    rec.add("python: get_token", describe(tokens.get_token(new.token.id)))
    rec.add("python: list_tokens", [describe(t) for t in tokens.list_tokens("acme", None, "api")])

    doomed = tokens.create_token(
        name="Doomed", workspace="acme", repository="api", scopes=["webhook"]
    )
    revoked = rec.issued(doomed.secret)
    rec.add("python: revoke_token", describe(tokens.revoke_token(doomed.token.id, "alice")))

    old = tokens.create_token(name="Rotated", workspace="acme", project="API", scopes=["project"])
    rotated_out = rec.issued(old.secret)
    rotated = tokens.rotate_token(old.token.id, rotated_by="alice")
    assert rotated is not None
    current = rec.issued(rotated.secret)
    rec.add("python: rotate_token", (repr(rotated), describe(rotated.token)))

    gone = tokens.create_token(name="Gone", workspace="acme", repository="lib", scopes=["runner"])
    rec.issued(gone.secret)
    rec.add("python: revoke_resource_tokens", tokens.revoke_resource_tokens("acme", None, "lib"))

    for bad in ({"name": ""}, {"scopes": ["nope"]}, {"scopes": ["account"]}):
        kwargs: dict[str, Any] = {"name": "x", "workspace": "acme", "repository": "api"}
        kwargs["scopes"] = ["repository"]
        kwargs.update(bad)
        with pytest.raises(ValueError) as raised:
            tokens.create_token(**kwargs)
        record_exception(rec, "python: create_token error", raised.value)

    store = Pipeline.of(current_app)
    for attempt in (revoked, rotated_out, forged(secret), secret[:-1] + "x", "bbat_short"):
        with pytest.raises(InvalidToken) as refused:
            store.authenticate(attempt, "198.51.100.7")
        record_exception(rec, "python: authenticate error", refused.value)
        response = refused.value.get_response()
        rec.add("python: authenticate error response", (response.headers, response.get_data()))
    rec.add("python: authenticate", describe(store.authenticate(secret, "198.51.100.7")))
    return {"valid": secret, "revoked": revoked, "rotated_out": rotated_out, "current": current}


def record_exception(rec: Recorder, where: str, error: BaseException) -> None:
    rec.add(where, str(error))
    rec.add(where, repr(error))
    rec.add(where, "".join(traceback.format_exception(error)))


def forged(secret: str) -> str:
    """Well formed, valid checksum, but not a token: passes to the lookup."""
    body = secret[:20] + ("A" if secret[20] != "A" else "B") + secret[21:-6]
    return body + tokenformat._checksum(body)


def use_protected_routes(rec: Recorder, app: Flask, known: dict[str, str]) -> None:
    client = app.test_client()
    garbage = [forged(known["valid"]), forged(known["current"]), known["valid"][:-2] + "zz"]
    rec.probes += garbage
    attempts = {
        "valid": [known["valid"]],
        "current": [known["current"]],
        "revoked": [known["revoked"]],
        # Past its grace window: reuse detection revokes the token.
        "rotated out": [known["rotated_out"]],
        "garbage": garbage,
    }
    paths = [("GET", REPO), ("POST", f"{REPO}/push"), ("GET", "/repositories/acme/web"),
             ("POST", f"{REPO}/pullrequests"), ("GET", "/workspaces/acme/projects/API"),
             ("GET", "/optional/acme/api")]  # fmt: skip
    for kind, secrets in attempts.items():
        for secret in secrets:
            for method, path in paths:
                for how, headers in (("bearer", bearer(secret)), ("basic", basic(secret))):
                    response = client.open(path, method=method, headers=headers)
                    rec.response(f"route {kind} {how} {method} {path}", response, app)
            # Sent where it must not be: the query string and a form.
            response = client.get(f"{REPO}?access_token={secret}")
            rec.response(f"route {kind} query", response, app)
            response = client.post(f"{REPO}/push", data={"access_token": secret})
            rec.response(f"route {kind} form", response, app)
    several = f"Bearer {known['valid']}, Bearer {known['current']}"
    response = client.get(REPO, headers={"Authorization": several})
    rec.response("route several tokens", response, app)
    assert response.status_code == 400


def use_management_api(rec: Recorder, app: Flask) -> str:
    client = app.test_client()
    path = f"{API}{REPO}/access-tokens"
    created = client.post(path, json={"name": "API made", "scopes": ["repository"]}, headers=ALICE)
    assert created.status_code == 201
    secret = rec.issued(created.get_json()["token"])
    rec.response("api create", created, app, reveals=secret)
    token_id = created.get_json()["id"]

    rotated = client.post(f"{path}/{token_id}/rotate", json={}, headers=ALICE)
    assert rotated.status_code == 201
    new_secret = rec.issued(rotated.get_json()["token"])
    rec.response("api rotate", rotated, app, reveals=new_secret)

    for where, response in (
        ("api list", client.get(path, headers=ALICE)),
        ("api list filtered", client.get(f"{path}?q=API&state=active", headers=ALICE)),
        ("api list workspace", client.get(f"{API}/workspaces/acme/access-tokens", headers=ALICE)),
        ("api get", client.get(f"{path}/{token_id}", headers=ALICE)),
        ("api bad create", client.post(path, json={"name": "", "scopes": ["x"]}, headers=ALICE)),
        ("api not json", client.post(path, data="name=x", headers=ALICE)),
        ("api unknown id", client.get(f"{path}/{'0' * 32}", headers=ALICE)),
        ("api as stranger", client.get(path)),
        # A token trying to manage tokens, with and without a signed-in user.
        ("api with token", client.get(path, headers=bearer(new_secret))),
        ("api with token and user", client.get(path, headers={**ALICE, **bearer(new_secret)})),
        (
            "api rotate with token",
            client.post(f"{path}/{token_id}/rotate", json={}, headers=basic(new_secret)),
        ),  # fmt: skip
    ):
        rec.response(where, response, app)
    assert client.get(REPO, headers=bearer(new_secret)).status_code == 200
    deleted = client.delete(f"{path}/{token_id}", headers=ALICE)
    assert deleted.status_code == 204
    rec.response("api delete", deleted, app)
    rec.response("api get revoked", client.get(f"{path}/{token_id}", headers=ALICE), app)
    return token_id


def use_cli(rec: Recorder, app: Flask) -> None:
    runner = app.test_cli_runner()

    def run(*args: str) -> Any:
        result = runner.invoke(args=["access-tokens", *args])
        rec.add(f"cli {' '.join(args[:1])}: stderr", result.stderr)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            record_exception(rec, f"cli {args[0]} exception", result.exception)
        return result

    made = run("create", "--workspace", "acme", "--repository", "api", "--name", "cli",
               "--scope", "repository")  # fmt: skip
    assert made.exit_code == 0, made.output
    secret = rec.issued(next(w for w in made.stdout.split() if w.startswith("bbat_")))
    rec.add("cli create: stdout", made.stdout)
    rec.reveals["cli create: stdout"] = {secret}

    made = run("create", "--workspace", "acme", "--name", "cli json", "--scope", "account",
               "--json")  # fmt: skip
    data = json.loads(made.stdout)
    json_secret = rec.issued(data["token"])
    rec.add("cli create --json: stdout", made.stdout)
    rec.reveals["cli create --json: stdout"] = {json_secret}

    rotated = run("rotate", data["id"])
    new_secret = rec.issued(next(w for w in rotated.stdout.split() if w.startswith("bbat_")))
    rec.add("cli rotate: stdout", rotated.stdout)
    rec.reveals["cli rotate: stdout"] = {new_secret}

    for args in (
        ("list", "--workspace", "acme", "--repository", "api"),
        ("list", "--workspace", "acme", "--all-in-workspace"),
        ("list", "--workspace", "acme", "--all-in-workspace", "--json"),
        ("show", data["id"]),
        ("show", data["id"], "--json"),
        ("show", "0" * 32),
        ("revoke", data["id"]),
        ("revoke", data["id"]),
        ("rotate", data["id"]),
        ("create", "--workspace", "acme", "--name", "x", "--scope", "nope"),
        ("prune", "--older-than-days", "0", "--dry-run"),
    ):
        result = run(*args)
        rec.add(f"cli {' '.join(args)}: stdout", result.stdout)


def use_admin_pages(rec: Recorder, app: Flask, token_id: str) -> None:
    client = app.test_client()
    client.get("/test-login?user=alice")
    base = f"{ADMIN}{REPO}/access-tokens"

    def page(where: str, url: str) -> Any:
        return rec.response(where, client.get(url), app)

    def submit(where: str, url: str, form: Any, reveals: bool = False, **data: Any) -> Any:
        """Post a form as a browser would, hidden fields included."""
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
        response = client.post(url, data={**hidden, **data})
        secret = secret_in(response.text)
        if reveals:
            assert response.status_code == 200 and secret is not None, response.text
            rec.issued(secret)
        rec.response(where, response, app, reveals=secret if reveals else None)
        return response

    form = page("admin new form", f"{base}/new")
    submit("admin create", f"{base}/new", form, reveals=True, name="Admin", scopes=["pipeline"])
    # The browser sends the same form again (reload, back): nothing new shown.
    again = submit("admin create again", f"{base}/new", form, name="Admin", scopes=["pipeline"])
    assert again.status_code == 303

    [new_id] = [t.id for t in AccessTokens.service().search(Resource.of("acme", None, "api")).items
                if t.name == "Admin"]  # fmt: skip
    confirm = page("admin confirm rotate", f"{base}/{new_id}/rotate")
    submit("admin rotate", f"{base}/{new_id}/rotate", confirm, reveals=True)
    again = submit("admin rotate again", f"{base}/{new_id}/rotate", confirm)
    assert again.status_code == 303

    page("admin list", base)
    page("admin list page 2", f"{base}?page=2")
    page("admin list resubmitted", again.headers["Location"])
    page("admin overview", f"{ADMIN}/workspaces/acme/access-tokens/all")
    page("admin overview filtered", f"{ADMIN}/workspaces/acme/access-tokens/all?state=revoked")
    page("admin project list", f"{ADMIN}/workspaces/acme/projects/API/access-tokens")
    page("admin token of the API", f"{base}/{token_id}/revoke")
    confirm = page("admin confirm revoke", f"{base}/{new_id}/revoke")
    revoked = submit("admin revoke", f"{base}/{new_id}/revoke", confirm)
    page("admin list after revoke", revoked.headers["Location"])
    with client.session_transaction() as sess:
        rec.add("admin session at the end", dict(sess))
    secret = rec.secrets[-1]
    rec.response("admin with token", client.get(base, headers=bearer(secret)), app)
    rec.response("admin as stranger", app.test_client().get(base), app)


def secret_in(html: str) -> str | None:
    match = re.search(r'<code id="token-secret"[^>]*>([^<]+)</code>', html)
    return match.group(1) if match else None


def dump_database(rec: Recorder, db: SQLAlchemy) -> None:
    db.session.remove()
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                rec.add(f"table {table.name}", row._asdict())


def test_no_secret_leaks_anywhere(
    parts: tuple[Flask, SQLAlchemy, AccessTokens],
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, db, tokens = parts
    known = use_python_api(recorder, app, tokens)
    use_protected_routes(recorder, app, known)
    token_id = use_management_api(recorder, app)
    use_cli(recorder, app)
    use_admin_pages(recorder, app, token_id)

    dump_database(recorder, db)

    # A database failure while creating: the error is logged with its SQL.
    TokenEvent.__table__.drop(db.engine)  # type: ignore[attr-defined]
    failed = app.test_client().post(
        f"{API}{REPO}/access-tokens", json={"name": "x", "scopes": ["runner"]}, headers=ALICE
    )
    assert failed.status_code == 503
    recorder.response("api create with the database failing", failed, app)
    db.session.remove()
    TokenEvent.__table__.create(db.engine)  # type: ignore[attr-defined]
    for record in caplog.records:
        recorder.add(f"log {record.name}", record.getMessage())
        recorder.add(f"log {record.name}", repr(record.args))
        recorder.add(f"log {record.name}", repr(vars(record)))
    recorder.add("log text", caplog.text)

    # The recording saw the things it must not leak from: SQL, signals,
    # logs of the failure, audit rows.
    places = {where.split(":")[0].split(" ")[0] for where, _ in recorder.seen}
    assert {"sql", "signal", "log", "table", "python", "route", "api", "cli", "admin"} <= places
    assert any(w.startswith("log") and "management failed" in t for w, t in recorder.seen)
    assert any(w == "signal token_reused" for w, _ in recorder.seen)

    assert len(recorder.secrets) >= 12
    leaks = []
    for secret in recorder.secrets + recorder.probes:
        allowed = {where for where, shown in recorder.reveals.items() if secret in shown}
        forms = pieces(secret)
        for where, text in recorder.seen:
            if where in allowed:
                continue
            form = next((form for form in forms if form in text), None)
            if form is not None:
                leaks.append((where, form, secret))
        for where in allowed:
            texts = [text for w, text in recorder.seen if w == where]
            assert any(secret in text for text in texts), f"{where} did not reveal it"
    assert not leaks, "\n".join(f"{w}: {form!r} of {s}" for w, form, s in leaks[:20])
