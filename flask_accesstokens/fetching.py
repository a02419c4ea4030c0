"""A small document over http(s), bounded in size and in time: the keys of
a secret-scanning partner and an OIDC issuer's documents are fetched while a
worker waits, so neither a large body nor a server trickling bytes may hold it.
"""

from __future__ import annotations

import time
import urllib.request


def fetch(url: str, timeout: float, limit: int) -> bytes:
    """The document's bytes, within about ``timeout`` seconds in all and at
    most ``limit`` bytes. The socket timeout bounds each read; the deadline
    bounds the whole."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "flask-accesstokens"}
    )
    chunks: list[bytes] = []
    size = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read1(65536):
            size += len(chunk)
            if size > limit:
                raise ValueError(f"document larger than {limit} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"document not read within {timeout} seconds")
            chunks.append(chunk)
    return b"".join(chunks)
