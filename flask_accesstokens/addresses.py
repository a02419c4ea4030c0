"""Client addresses: a token's allow list of networks, and the address a
request comes from.

The request path calls :func:`allows` on every request of a token with an
allow list, so each distinct stored list is parsed once and kept (bounded);
checking an address is then a few integer comparisons.

The address is ``request.remote_addr``, whatever the app's WSGI stack made of
it: with Werkzeug's ``ProxyFix(x_for=N)`` it is the N-th address from the
right of ``X-Forwarded-For``, without it the peer's address.
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
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as e:
            reason = "has host bits set" if "host bits set" in str(e) else "is not an IP network"
            raise ValueError(f"{text!r} {reason}") from None
        normal = network.with_prefixlen
        if normal not in networks:
            networks.append(normal)
    if not networks:
        raise ValueError("must list at least one network, or be null for anywhere")
    if len(networks) > MAX_ENTRIES:
        raise ValueError(f"at most {MAX_ENTRIES} networks")
    return tuple(networks)


@lru_cache(maxsize=PARSED_LISTS_KEPT)
def _networks(stored: str) -> tuple[IPNetwork, ...]:
    # A stored list was checked when written; anything unreadable in it
    # (edited by hand) is dropped, which can only narrow what is allowed.
    parsed: list[IPNetwork] = []
    for entry in stored.split():
        try:
            parsed.append(ipaddress.ip_network(entry))
        except ValueError:
            continue
    return tuple(parsed)


def client_address(remote_addr: str | None) -> IPAddress | None:
    """The request's address, or None if it is not an IP address. An
    IPv4-mapped IPv6 address (``::ffff:198.51.100.7``) counts as the IPv4
    address it carries, as dual-stack servers report IPv4 clients."""
    if not remote_addr:
        return None
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def allows(stored: str, remote_addr: str | None) -> bool:
    """Whether the stored allow list admits this address. Fails closed: no
    address, or one that is not an IP address, is not allowed."""
    address = client_address(remote_addr)
    if address is None:
        return False
    return any(address in network for network in _networks(stored))
