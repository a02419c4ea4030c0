"""Client addresses: a token's allow list of networks, and the address a
request comes from.

The request path calls :func:`allows` on every request of a token with an
allow list, so each distinct stored list is parsed once and kept (bounded);
checking an address is then a few integer comparisons.

The address is ``request.remote_addr``, whatever the app's WSGI stack made of
it: with Werkzeug's ``ProxyFix(x_for=N)`` it is the N-th address from the
right of ``X-Forwarded-For``, without it the peer's address.

Everything here sees one client the same way: an IPv4-mapped IPv6 address
(``::ffff:198.51.100.7``) is the IPv4 address it carries, and a zone id
(``fe80::1%eth0``) names an interface of the server, not a client, so it is
dropped from addresses and refused in allow lists. Throttles count a client
as its IPv4 address or its IPv6 network (:func:`client_key`): one IPv6 host
holds a whole ``/64``, so counting per address would give it 2^64 budgets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: More entries than any real allow list needs; keeps the column and the
#: per-request check small.
MAX_ENTRIES = 100
#: Distinct allow lists whose parsed networks a process keeps.
PARSED_LISTS_KEPT = 4096
#: The IPv6 network a throttle counts as one client, by default: a /64 is
#: what one host, one home or one VM is given.
DEFAULT_IPV6_PREFIX = 64
#: Longest key a throttle keeps for a client that is not an IP address (a
#: Unix socket path, a proxy's garbage).
MAX_OTHER_KEY_LENGTH = 100
#: IPv4 addresses as IPv6 clients of a dual-stack socket show them.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_allow_list(entries: Iterable[object]) -> tuple[str, ...]:
    """Check and normalise an allow list. Each entry is an IPv4 or IPv6
    network in strict form (``10.0.0.0/8``; ``10.0.0.1/8`` has host bits set
    and is refused) or a bare address (a ``/32`` or ``/128``). Raises
    :class:`ValueError` saying which entry is wrong; an empty list is an
    error too (None, not ``[]``, means anywhere)."""
    if isinstance(entries, (str, bytes)):
        raise ValueError("must be a list of networks, not a string")
    networks: list[str] = []
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"{entry!r} is not an IP network")
        text = entry.strip()
        if "%" in text:
            raise ValueError(f"{text!r} has a zone id, which no client address carries")
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            reason = "has host bits set" if "host bits set" in str(e) else "is not an IP network"
            raise ValueError(f"{text!r} {reason}") from None
        normal = unmapped(network).with_prefixlen
        if normal not in networks:
            networks.append(normal)
    if not networks:
        raise ValueError("must list at least one network, or be null for anywhere")
    if len(networks) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} networks")
    return tuple(networks)


def unmapped(network: IPNetwork) -> IPNetwork:
    """An IPv6 network inside ``::ffff:0:0/96`` as the IPv4 network it
    maps: clients in mapped form are compared as IPv4, so the IPv6 spelling
    (``::ffff:10.0.0.0/104``) would never match. Other networks as given."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


@lru_cache(maxsize=PARSED_LISTS_KEPT)
def _networks(stored: str) -> tuple[IPNetwork, ...]:
    # A stored list was checked when written; anything unreadable in it
    # (edited by hand) is dropped, which can only narrow what is allowed.
    parsed: list[IPNetwork] = []
    for entry in stored.split():
        if "%" in entry:  # a zone id, stored before they were refused
            continue
        try:
            parsed.append(unmapped(ipaddress.ip_network(entry)))
        except ValueError:
            continue
    return tuple(parsed)


def client_address(remote_addr: str | None) -> IPAddress | None:
    """The request's address, or None if it is not an IP address. An
    IPv4-mapped IPv6 address (``::ffff:198.51.100.7``) counts as the IPv4
    address it carries, as dual-stack servers report IPv4 clients; a zone id
    is dropped."""
    if not remote_addr:
        return None
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def client_key(remote_addr: str | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """Who a throttle counts: an IPv4 address as itself, an IPv6 address as
    its ``/ipv6_prefix`` network (``2001:db8:1:2::/64``), so the addresses
    of one host share a budget. ``::ffff:a.b.c.d`` is ``a.b.c.d``. A client
    that is not an IP address is its (cut) text, no client at all ``-``."""
    address = client_address(remote_addr)
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address is not None:
        return ipaddress.IPv6Network((address, ipv6_prefix), strict=False).with_prefixlen
    return remote_addr[:MAX_OTHER_KEY_LENGTH] if remote_addr else "-"


def allows(stored: str, remote_addr: str | None) -> bool:
    """Whether the stored allow list admits this address. Fails closed: no
    address, or one that is not an IP address, is not allowed."""
    address = client_address(remote_addr)
    if address is None:
        return False
    return any(address in network for network in _networks(stored))
