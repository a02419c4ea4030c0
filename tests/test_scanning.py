"""Secret-scanning reports: keys served over loopback HTTP, real ECDSA
signatures, and the bounds on fetching, bodies and entries."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import ed25519

from flask_accesstokens import scanning
from flask_accesstokens import tokenformat
from flask_accesstokens.scanning import InvalidReport
from flask_accesstokens.scanning import PublicKeys
from flask_accesstokens.scanning import ReportedToken
from flask_accesstokens.scanning import ReportVerifier

TOKEN = tokenformat.generate("bbat")
BODY = json.dumps(
    [
        {
            "token": TOKEN,
            "type": "bbat_token",
            "url": "https://github.com/o/r/blob/x",
            "source": "content",
        }
    ],
    separators=(",", ":"),
).encode()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class KeyServer(ThreadingHTTPServer):
    """Serves ``document`` with ``status`` and counts the fetches."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.document = b'{"public_keys": []}'
        self.status = 200
        self.delay = 0.0
        self.fetches = 0
        self._count_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/meta/public_keys/secret_scanning"

    def serve(
        self, *keys: tuple[str, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey]
    ) -> None:
        self.document = document(*keys)


class _Handler(BaseHTTPRequestHandler):
    server: KeyServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        with self.server._count_lock:
            self.server.fetches += 1
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.document)))
        self.end_headers()
        self.wfile.write(self.server.document)

    def log_message(self, format: str, *args: object) -> None:
        pass


def pem(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def document(*keys: tuple[str, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey]) -> bytes:
    return json.dumps(
        {
            "public_keys": [
                {"key_identifier": key_id, "key": pem(key), "is_current": index == 0}
                for index, (key_id, key) in enumerate(keys)
            ]
        }
    ).encode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def server(private_key: ec.EllipticCurvePrivateKey) -> Iterator[KeyServer]:
    server = KeyServer()
    server.serve(("k1", private_key.public_key()))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(clock: FakeClock) -> ReportVerifier:
    return ReportVerifier(clock=clock, timeout=2.0)


def verify(
    verifier: ReportVerifier,
    server: KeyServer,
    body: bytes,
    key_id: str | None,
    signature: str | None,
    provider: str = "github",
) -> list[ReportedToken]:
    return verifier.verify(provider, server.url, body, key_id, signature)


# --- names, hashes, labels ---------------------------------------------------------------------


def test_header_names_capitalise_the_provider() -> None:
    assert scanning.header_names("github") == (
        "Github-Public-Key-Identifier",
        "Github-Public-Key-Signature",
    )
    assert scanning.header_names("gitlab")[0] == "Gitlab-Public-Key-Identifier"


@pytest.mark.parametrize("provider", ["", "git hub", "github\r\nX-Evil: 1", "a" * 33, "public"])
def test_provider_names_that_cannot_be_headers_or_are_reserved(provider: str) -> None:
    with pytest.raises(ValueError, match="ACCESSTOKENS_SECRET_SCANNING_KEYS"):
        scanning.header_names(provider)


def test_token_hash_is_sha256_of_the_token_string() -> None:
    assert scanning.token_hash(TOKEN) == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_feedback_entry_uses_githubs_labels() -> None:
    entry = ReportedToken(token=TOKEN, type="bbat_token", url=None, source=None)
    assert entry.feedback(issued=True) == {
        "token_hash": scanning.token_hash(TOKEN),
        "token_type": "bbat_token",
        "label": "true_positive",
    }
    assert entry.feedback(issued=False)["label"] == scanning.FALSE_POSITIVE == "false_positive"


def test_config_is_checked_naming_the_key() -> None:
    value = {"github": "https://api.github.com/meta/public_keys/secret_scanning"}
    assert scanning.check_secret_scanning_keys(value) == value
    for bad in (
        ["github"],
        {"github": "file:///etc/passwd"},
        {"github": 1},
        {"public": "https://x"},
    ):
        with pytest.raises(ValueError, match="ACCESSTOKENS_SECRET_SCANNING_KEYS"):
            scanning.check_secret_scanning_keys(bad)


# --- signatures ----------------------------------------------------------------------------------


def test_a_signed_report_verifies(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    reported = verify(verifier, server, BODY, "k1", sign(private_key, BODY))
    assert reported == [
        ReportedToken(
            token=TOKEN, type="bbat_token", url="https://github.com/o/r/blob/x", source="content"
        )
    ]
    assert server.fetches == 1


def test_the_module_level_function_uses_shared_caches(
    server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    signature = sign(private_key, BODY)
    assert scanning.verify_report("github", server.url, BODY, "k1", signature)[0].token == TOKEN
    assert scanning.verify_report("github", server.url, BODY, "k1", signature)[0].token == TOKEN
    assert server.fetches == 1


def test_a_tampered_body_is_refused(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    signature = sign(private_key, BODY)
    tampered = BODY.replace(b"bbat_", b"bbbt_", 1)
    with pytest.raises(InvalidReport, match="signature"):
        verify(verifier, server, tampered, "k1", signature)


def test_the_same_json_in_other_bytes_is_refused(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    signature = sign(private_key, BODY)
    reserialized = json.dumps(json.loads(BODY), indent=1).encode()
    assert json.loads(reserialized) == json.loads(BODY) and reserialized != BODY
    with pytest.raises(InvalidReport, match="signature"):
        verify(verifier, server, reserialized, "k1", signature)


def test_a_signature_by_another_key_is_refused(
    verifier: ReportVerifier,
    server: KeyServer,
    private_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
) -> None:
    server.serve(("k1", private_key.public_key()), ("k2", other_key.public_key()))
    # Signed by k1 but claiming k2: both keys are known, the pairing is wrong.
    with pytest.raises(InvalidReport, match="signature"):
        verify(verifier, server, BODY, "k2", sign(private_key, BODY))
    with pytest.raises(InvalidReport, match="unknown github public key"):
        verify(verifier, server, BODY, "k3", sign(private_key, BODY))


@pytest.mark.parametrize(
    ("key_id", "signature"), [(None, "c2ln"), ("k1", None), ("", "c2ln"), ("k1", "")]
)
def test_an_unsigned_report_is_refused_without_a_fetch(
    verifier: ReportVerifier, server: KeyServer, key_id: str | None, signature: str | None
) -> None:
    with pytest.raises(InvalidReport, match="not signed"):
        verify(verifier, server, BODY, key_id, signature)
    assert server.fetches == 0


@pytest.mark.parametrize(
    "signature",
    [
        "not base64!",
        "c2ln",  # base64 of b"sig": not DER
        base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),  # DER, r = s = 1
        "MEUCIQ" + "A" * 1000,  # far longer than any P-256 signature
        "é",
        "c2ln\n",
    ],
)
def test_malformed_signatures_are_invalid_not_errors(
    verifier: ReportVerifier, server: KeyServer, signature: str
) -> None:
    with pytest.raises(InvalidReport, match="signature"):
        verify(verifier, server, BODY, "k1", signature)


def test_verify_signature_needs_exactly_the_signed_bytes(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    key = private_key.public_key()
    assert scanning.verify_signature(key, b"body", sign(private_key, b"body"))
    assert not scanning.verify_signature(key, b"body ", sign(private_key, b"body"))


def test_keys_that_are_not_p256_are_left_out(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    edwards = ed25519.Ed25519PrivateKey.generate()
    server.serve(
        ("p384", p384.public_key()), ("ed", edwards.public_key()), ("k1", private_key.public_key())
    )
    assert scanning.load_public_key(pem(p384.public_key())) is None
    assert scanning.load_public_key(pem(edwards.public_key())) is None
    p384_signature = base64.b64encode(p384.sign(BODY, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(InvalidReport, match="unknown"):
        verify(verifier, server, BODY, "p384", p384_signature)
    # The P-256 key in the same document still works.
    assert verify(verifier, server, BODY, "k1", sign(private_key, BODY))
    assert server.fetches == 1


def test_malformed_entries_in_the_document_are_left_out(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    entries = json.loads(document(("k1", private_key.public_key())))["public_keys"]
    entries += [
        {
            "key_identifier": "bad-pem",
            "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        },
        {"key_identifier": "no-key"},
        {"key": pem(private_key.public_key())},
        "not an object",
        {"key_identifier": "not-ascii", "key": "ключ"},
    ]
    server.document = json.dumps({"public_keys": entries}).encode()
    keys = verifier.keys("github", server.url)
    assert keys.get("bad-pem") is None
    assert keys.get("not-ascii") is None
    assert keys.get("k1") is not None
    assert server.fetches == 1


# --- the keys cache ---------------------------------------------------------------------------


def test_a_new_key_is_found_by_one_refetch(
    verifier: ReportVerifier,
    server: KeyServer,
    clock: FakeClock,
    private_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
) -> None:
    assert verify(verifier, server, BODY, "k1", sign(private_key, BODY))
    server.serve(("k2", other_key.public_key()), ("k1", private_key.public_key()))
    clock.advance(scanning.REFETCH_INTERVAL)
    assert verify(verifier, server, BODY, "k2", sign(other_key, BODY))
    assert server.fetches == 2
    # Both keys are now cached: neither costs a fetch.
    assert verify(verifier, server, BODY, "k1", sign(private_key, BODY))
    assert verify(verifier, server, BODY, "k2", sign(other_key, BODY))
    assert server.fetches == 2


def test_unknown_key_ids_refetch_at_most_once_a_minute(
    verifier: ReportVerifier,
    server: KeyServer,
    clock: FakeClock,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    signature = sign(private_key, BODY)
    for second in range(60):
        with pytest.raises(InvalidReport, match="unknown"):
            verify(verifier, server, BODY, f"guess-{second}", signature)
        clock.advance(59 / 60)
    assert server.fetches == 1
    clock.advance(1)
    for attempt in range(20):
        with pytest.raises(InvalidReport, match="unknown"):
            verify(verifier, server, BODY, f"again-{attempt}", signature)
    assert server.fetches == 2


def test_concurrent_lookups_share_one_fetch(server: KeyServer, clock: FakeClock) -> None:
    keys = PublicKeys(server.url, clock=clock, timeout=5.0)
    server.delay = 0.2  # long enough that every thread asks while the fetch is under way
    barrier = threading.Barrier(8)
    found: list[object] = []

    def ask() -> None:
        barrier.wait()
        found.append(keys.get("k1"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and all(key is not None for key in found)
    assert server.fetches == 1


def test_a_withdrawn_key_stops_verifying_once_the_document_is_old(
    server: KeyServer,
    clock: FakeClock,
    private_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
) -> None:
    keys = PublicKeys(server.url, clock=clock)
    assert keys.get("k1") is not None
    server.serve(("k2", other_key.public_key()))
    clock.advance(scanning.MAX_KEYS_AGE - 1)
    assert keys.get("k1") is not None  # still fresh: no fetch
    assert server.fetches == 1
    clock.advance(1)
    assert keys.get("k1") is None
    assert server.fetches == 2


def test_a_failed_fetch_means_unknown_and_is_logged_without_the_body(
    server: KeyServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = PublicKeys(server.url, clock=clock)
    server.status = 500
    server.document = b"SECRET-SERVER-BODY"
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        assert keys.get("k1") is None
    assert "HTTP 500" in caplog.text
    assert "SECRET-SERVER-BODY" not in caplog.text
    caplog.clear()
    # A 200 that is not a keys document fails the same way.
    server.status = 200
    clock.advance(scanning.REFETCH_INTERVAL)
    with caplog.at_level(logging.WARNING, logger="flask_accesstokens"):
        assert keys.get("k1") is None
    assert "Could not fetch secret-scanning keys" in caplog.text
    assert "SECRET-SERVER-BODY" not in caplog.text
    assert server.fetches == 2


@pytest.mark.parametrize(
    "served",
    [
        b"[" * 100_000,
        b"[]",
        b'{"public_keys": {}}',
        b"\xff",
        b"x" * (scanning.MAX_KEYS_DOCUMENT_BYTES + 1),
    ],
)
def test_a_document_that_is_not_a_keys_document_means_unknown(
    server: KeyServer, clock: FakeClock, served: bytes
) -> None:
    server.document = served
    assert PublicKeys(server.url, clock=clock).get("k1") is None
    assert server.fetches == 1


def test_a_failed_refresh_keeps_the_keys_already_known(
    server: KeyServer, clock: FakeClock, private_key: ec.EllipticCurvePrivateKey
) -> None:
    keys = PublicKeys(server.url, clock=clock)
    assert keys.get("k1") is not None
    server.status = 503
    clock.advance(scanning.MAX_KEYS_AGE)
    assert keys.get("k1") is not None
    assert server.fetches == 2


def test_an_unreachable_server_is_an_unknown_key(clock: FakeClock) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    keys = PublicKeys(f"http://127.0.0.1:{port}/keys", clock=clock, timeout=1.0)
    assert keys.get("k1") is None


def test_a_server_that_never_answers_costs_about_the_timeout(clock: FakeClock) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts the connection; nobody ever reads or answers
        keys = PublicKeys(
            f"http://127.0.0.1:{silent.getsockname()[1]}/keys", clock=clock, timeout=0.3
        )
        started = time.monotonic()
        assert keys.get("k1") is None
        assert time.monotonic() - started < 2.0


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(ValueError, match="not an http"):
        PublicKeys("file:///etc/passwd")


# --- report bodies ----------------------------------------------------------------------------


def test_a_body_over_one_mebibyte_is_refused_before_any_fetch(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    body = BODY + b" " * (scanning.MAX_REPORT_BYTES + 1 - len(BODY))
    with pytest.raises(InvalidReport, match="larger than"):
        verify(verifier, server, body, "k1", sign(private_key, body))
    assert server.fetches == 0
    with pytest.raises(InvalidReport, match="larger than"):
        scanning.parse_report(body)


def test_a_body_of_exactly_one_mebibyte_is_read(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    body = BODY + b" " * (scanning.MAX_REPORT_BYTES - len(BODY))
    assert len(verify(verifier, server, body, "k1", sign(private_key, body))) == 1


@pytest.mark.parametrize(
    "body",
    [b"{}", b'"bbat_x"', b"null", b"42", b"not json", b"", b"[" * 100_000, b"\xff\xfe[]"],
)
def test_a_signed_body_that_is_not_a_json_array_is_refused(
    verifier: ReportVerifier,
    server: KeyServer,
    private_key: ec.EllipticCurvePrivateKey,
    body: bytes,
) -> None:
    with pytest.raises(InvalidReport, match="not"):
        verify(verifier, server, body, "k1", sign(private_key, body))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (1, "entry 0 is not an object"),
        ([TOKEN], "entry 0 is not an object"),
        ({"type": "bbat_token"}, "required"),
        ({"token": TOKEN}, "required"),
        ({"token": 1, "type": "bbat_token"}, "'token' must be a string"),
        ({"token": TOKEN, "type": ["bbat_token"]}, "'type' must be a string"),
        ({"token": TOKEN, "type": "bbat_token", "url": 5}, "'url' must be a string"),
        ({"token": TOKEN, "type": "bbat_token", "source": {}}, "'source' must be a string"),
    ],
)
def test_entries_of_the_wrong_shape_are_refused(entry: object, message: str) -> None:
    with pytest.raises(InvalidReport, match=message):
        scanning.parse_report(json.dumps([entry]).encode())


def test_lone_surrogates_are_refused() -> None:
    body = b'[{"token": "bbat_\\ud800", "type": "bbat_token"}]'
    with pytest.raises(InvalidReport, match="not valid Unicode"):
        scanning.parse_report(body)


def test_the_number_of_entries_is_bounded() -> None:
    entry = {"token": TOKEN, "type": "bbat_token"}
    assert len(scanning.parse_report(json.dumps([entry] * 1000).encode())) == 1000
    with pytest.raises(InvalidReport, match="more than 1000"):
        scanning.parse_report(json.dumps([entry] * 1001).encode())


def test_entries_keep_order_duplicates_and_ignore_unknown_fields() -> None:
    body = json.dumps(
        [
            {"token": "one", "type": "t", "url": None, "extra": [1]},
            {"token": "two", "type": "t"},
            {"token": "one", "type": "t"},
        ]
    ).encode()
    assert [entry.token for entry in scanning.parse_report(body)] == ["one", "two", "one"]
    assert scanning.parse_report(b"[]") == []


def test_gitlab_reports_have_no_source(
    verifier: ReportVerifier, server: KeyServer, private_key: ec.EllipticCurvePrivateKey
) -> None:
    entry = {"type": "bbat_token", "token": TOKEN, "url": "https://gitlab.com/g/p/-/blob/x"}
    body = json.dumps([entry]).encode()
    reported = verify(verifier, server, body, "k1", sign(private_key, body), provider="gitlab")
    assert reported == [
        ReportedToken(
            token=TOKEN, type="bbat_token", url="https://gitlab.com/g/p/-/blob/x", source=None
        )
    ]


def test_reports_are_frozen_records() -> None:
    (entry,) = scanning.parse_report(BODY)
    with pytest.raises(AttributeError):
        entry.token = "other"  # type: ignore[misc]
