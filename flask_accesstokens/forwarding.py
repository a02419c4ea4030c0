"""The original request behind a forward-auth check, as a gateway reports it.

nginx's ``auth_request``, Caddy's ``forward_auth``, Traefik's ``forwardAuth``
and Envoy's ``ext_authz`` ask the app about a request they hold back. What
that request was comes from headers any client could also send, so they are
believed only from the gateways of ``ACCESSTOKENS_GATEWAY_PROXIES``, and every
report present must agree.

The path is read the way an upstream will route it: percent-decoded once,
with duplicate slashes merged. Where upstreams disagree about a path, there is
no single answer to give, so it is refused: an encoded slash or backslash
(``%2F``: a separator to one server, a name to the next), a dot segment
(nginx resolves ``..``, gunicorn passes it on, so ``/a/evil/../b`` names
``a/b`` to one and ``evil`` to the other), a ``;`` (Java servers cut path
parameters out of segments), a second round of encoding (``%252F``), a
backslash, control characters and bytes that are not UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .addresses import client_address
from .addresses import IPNetwork

#: (method, URI) header pairs, as gateways send them: Traefik and Caddy, then nginx.
HEADER_PAIRS = (
    ("HTTP_X_FORWARDED_METHOD", "HTTP_X_FORWARDED_URI"),
    ("HTTP_X_ORIGINAL_METHOD", "HTTP_X_ORIGINAL_URI"),
)
#: An RFC 9110 method token, in the upper case every gateway sends.
METHOD = re.compile(r"[A-Z]{1,32}")
#: Longer than any request line a gateway accepts by default.
MAX_URI = 8192
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_LEFT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
#: Raw bytes no upstream reads the same way: controls, space, backslash, DEL.
_BAD_RAW = frozenset(range(0x21)) | {0x5C, 0x7F}
#: Decoded bytes that would change the path's shape or meaning.
_BAD_DECODED = frozenset(range(0x20)) | {0x2F, 0x5C, 0x7F}


class NotForwarded(Exception):
    """The check cannot know the original request: answered 403. The message
    is for the log, never for the client."""


@dataclass(frozen=True)
class OriginalRequest:
    """What the gateway holds back: its method, its path as the upstream
    routes it (decoded), and the client the gateway saw."""

    method: str
    path: str
    client: str


def original_request(
    environ: Mapping[str, Any], proxies: Iterable[IPNetwork], own_uri: str | None = None
) -> OriginalRequest:
    """Read the original request from a trusted gateway's headers, and from
    ``own_uri`` (the check's own path past the check's, with its own method:
    Envoy's form) when given. Raises :class:`NotForwarded`."""
    peer = client_address(environ.get("REMOTE_ADDR"))
    if peer is None or not any(peer in network for network in proxies):
        raise NotForwarded(f"{environ.get('REMOTE_ADDR')} is not a trusted gateway")
    reports: list[tuple[str, str]] = []
    for method_key, uri_key in HEADER_PAIRS:
        method, uri = environ.get(method_key), environ.get(uri_key)
        if method is None and uri is None:
            continue
        if method is None or uri is None:
            raise NotForwarded(f"only half of {method_key[5:]} and {uri_key[5:]}")
        reports.append((method, uri))
    if own_uri is not None:
        reports.append((environ.get("REQUEST_METHOD", ""), own_uri))
    if not reports:
        raise NotForwarded("no original method and URI")
    if any(report != reports[0] for report in reports[1:]):
        raise NotForwarded("the reports of the original request disagree")
    method, uri = reports[0]
    if not METHOD.fullmatch(method):
        raise NotForwarded("not a method")
    path = upstream_path(uri)
    if path is None:
        raise NotForwarded("an ambiguous or malformed URI")
    return OriginalRequest(method, path, forwarded_client(environ))


def forwarded_client(environ: Mapping[str, Any]) -> str:
    """The client the gateway reports: the rightmost ``X-Forwarded-For``
    entry, the one the gateway itself added. Anything to its left came from
    the client and proves nothing."""
    forwarded: str = environ.get("HTTP_X_FORWARDED_FOR") or ""
    address = client_address(forwarded.rpartition(",")[2].strip())
    if address is None:
        raise NotForwarded("no client address in X-Forwarded-For")
    return str(address)


def upstream_path(uri: str) -> str | None:
    """The path of an origin-form request target as an upstream routes it,
    or None when upstreams could read it differently (see the module's
    docstring). The query is not part of a route and is ignored."""
    if len(uri) > MAX_URI or not uri.startswith("/") or uri.startswith("//") or "#" in uri:
        return None
    try:
        raw = uri.partition("?")[0].encode("latin-1")  # WSGI: bytes as latin-1
    except UnicodeEncodeError:
        return None
    if not _BAD_RAW.isdisjoint(raw) or b";" in raw:
        return None
    decoded: list[bytes] = []
    position = 0
    for match in _ESCAPE.finditer(raw):
        byte = int(match.group(1), 16)
        if byte in _BAD_DECODED:
            return None
        decoded += [raw[position : match.start()], bytes((byte,))]
        position = match.end()
    rest = raw[position:]
    if b"%" in rest or any(b"%" in part for part in decoded[::2]):
        return None  # a '%' that starts no escape
    try:
        text = (b"".join(decoded) + rest).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.isprintable() or ";" in text or _LEFT_ENCODED.search(text):
        return None
    segments = text.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        return None
    kept = [segment for segment in segments if segment]
    trailing = "/" if segments[-1] == "" and kept else ""
    return "/" + "/".join(kept) + trailing
