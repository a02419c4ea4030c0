"""Reading the original request from a gateway: trust, agreement, the client
address, and the path as an upstream routes it."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from flask_accesstokens.forwarding import NotForwarded
from flask_accesstokens.forwarding import original_request
from flask_accesstokens.forwarding import upstream_path

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def environ(**headers: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "HTTP_X_FORWARDED_FOR": "198.51.100.7",
    }
    base.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return base


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("/svc/acme/api/builds", "/svc/acme/api/builds"),
        ("/svc/acme/api/builds?page=2&x=%2F", "/svc/acme/api/builds"),
        ("/svc/%61cme/api", "/svc/acme/api"),
        ("/svc/jos%C3%A9/api", "/svc/josé/api"),
        ("/svc/jos\xc3\xa9/api", "/svc/josé/api"),  # raw UTF-8, as WSGI hands it over
        ("/svc//acme///api", "/svc/acme/api"),
        ("/svc/acme/api/", "/svc/acme/api/"),
        ("/svc/acme/api//", "/svc/acme/api/"),
        ("/", "/"),
        ("/svc/100%25/api", "/svc/100%/api"),
        ("/svc/a%20b", "/svc/a b"),
    ],
)
def test_paths_are_read_as_an_upstream_routes_them(uri: str, path: str) -> None:
    assert upstream_path(uri) == path


@pytest.mark.parametrize(
    "uri",
    [
        "/svc/acme%2Fapi/builds",  # a separator to one server, a name to another
        "/svc/acme%2fapi/builds",
        "/svc/acme%5Capi",
        "/svc/acme\\api",
        "/svc/acme/../evil/builds",  # resolved by nginx, not by gunicorn
        "/svc/acme/%2e%2e/evil",
        "/svc/./acme",
        "/svc/acme/..",
        "/svc/acme;jsessionid=x/api",  # Java servers cut path parameters
        "/svc/acme%3Bx/api",
        "/svc/acme%252Fapi",  # encoded twice
        "/svc/acme%00",
        "/svc/acme\x00",
        "/svc/acme%0a",
        "/svc/a b",
        "/svc/acme%",
        "/svc/acme%zz",
        "/svc/%C3",  # not UTF-8
        "/svc/%C2%A0",  # not printable
        "svc/acme",
        "//evil.example/svc",
        "http://evil.example/svc/acme",
        "*",
        "",
        "/svc/acme#x",
        "/" + "a" * 9000,
        "/svc/\u0100",  # not a WSGI (latin-1) string
    ],
)
def test_ambiguous_or_malformed_paths_are_refused(uri: str) -> None:
    assert upstream_path(uri) is None


def test_headers_are_believed_only_from_a_trusted_gateway() -> None:
    env = environ(x_forwarded_method="GET", x_forwarded_uri="/svc/acme/api")
    assert original_request(env, LOOPBACK).path == "/svc/acme/api"
    for peer in ("203.0.113.9", "10.0.0.1", "", "not an address"):
        with pytest.raises(NotForwarded):
            original_request({**env, "REMOTE_ADDR": peer}, LOOPBACK)
    # An IPv4-mapped loopback peer is the loopback address.
    assert original_request({**env, "REMOTE_ADDR": "::ffff:127.0.0.1"}, LOOPBACK).method == "GET"
    assert original_request({**env, "REMOTE_ADDR": "::1"}, LOOPBACK).method == "GET"
    with pytest.raises(NotForwarded):
        original_request(env, ())


def test_both_header_pairs_must_agree() -> None:
    nginx = {"x_original_method": "POST", "x_original_uri": "/svc/acme/api"}
    traefik = {"x_forwarded_method": "POST", "x_forwarded_uri": "/svc/acme/api"}
    assert original_request(environ(**nginx), LOOPBACK).method == "POST"
    assert original_request(environ(**nginx, **traefik), LOOPBACK).path == "/svc/acme/api"
    other_uri = {**traefik, "x_forwarded_uri": "/svc/evil/api"}
    other_method = {**traefik, "x_forwarded_method": "GET"}
    for disagreeing in (other_uri, other_method):
        with pytest.raises(NotForwarded):
            original_request(environ(**nginx, **disagreeing), LOOPBACK)
    for half in ({"x_original_uri": "/svc/acme/api"}, {"x_forwarded_method": "GET"}):
        with pytest.raises(NotForwarded):
            original_request(environ(**half), LOOPBACK)
    with pytest.raises(NotForwarded):  # a client's half pair beside the gateway's whole one
        original_request(environ(**nginx, x_forwarded_uri="/svc/acme/api"), LOOPBACK)
    with pytest.raises(NotForwarded):
        original_request(environ(), LOOPBACK)


def test_envoy_form_takes_the_checks_own_method_and_must_agree_with_headers() -> None:
    env = {**environ(), "REQUEST_METHOD": "DELETE"}
    found = original_request(env, LOOPBACK, "/svc/acme/api?x=1")
    assert (found.method, found.path) == ("DELETE", "/svc/acme/api")
    spoofed = {**env, "HTTP_X_ORIGINAL_METHOD": "GET", "HTTP_X_ORIGINAL_URI": "/svc/evil/api"}
    with pytest.raises(NotForwarded):
        original_request(spoofed, LOOPBACK, "/svc/acme/api")


@pytest.mark.parametrize("method", ["get", "G ET", "", "GET\r\n", "X" * 40])
def test_methods_are_upper_case_tokens(method: str) -> None:
    with pytest.raises(NotForwarded):
        original_request(environ(x_forwarded_method=method, x_forwarded_uri="/a"), LOOPBACK)


def test_the_client_is_the_rightmost_forwarded_for_entry() -> None:
    def client(xff: str | None) -> str:
        env = environ(x_forwarded_method="GET", x_forwarded_uri="/a")
        if xff is None:
            del env["HTTP_X_FORWARDED_FOR"]
        else:
            env["HTTP_X_FORWARDED_FOR"] = xff
        return original_request(env, LOOPBACK).client

    assert client("198.51.100.7") == "198.51.100.7"
    assert client("10.9.9.9, 198.51.100.7") == "198.51.100.7"  # the left one is the client's word
    assert client("1.2.3.4,2001:db8::1") == "2001:db8::1"
    assert client("::ffff:198.51.100.7") == "198.51.100.7"
    for bad in (None, "", "unknown", "198.51.100.7, ", "198.51.100.7:443", "[::1]:80"):
        with pytest.raises(NotForwarded):
            client(bad)
