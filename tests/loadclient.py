"""A bounded HTTP load on loopback, run as its own process by the
multi-process tests::

    python loadclient.py PORT PATH --threads 4 --seconds 3 --max-requests 5000 --out FILE

Authorization headers come from the environment (``LOADCLIENT_AUTHORIZATION``,
several separated by newlines, one per thread in turn), never the command
line. Prints ``started`` once running, then writes one JSON line per request
to ``--out``: when it was sent (``time.monotonic()``, which every process on
the machine shares), which header it carried and the status (0 for a
connection error). Stops at whichever bound comes first.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    headers = os.environ["LOADCLIENT_AUTHORIZATION"].split("\n")

    deadline = time.monotonic() + args.seconds
    tickets = itertools.count()
    results: list[tuple[float, int, int]] = []
    lock = threading.Lock()

    def run(which: int) -> None:
        header = {"Authorization": headers[which]}
        mine: list[tuple[float, int, int]] = []
        while time.monotonic() < deadline and next(tickets) < args.max_requests:
            sent = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
                conn.request("GET", args.path, headers=header)
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except OSError:
                status = 0
            mine.append((sent, which, status))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(n % len(headers),)) for n in range(args.threads)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    for thread in threads:
        thread.join()
    with open(args.out, "w") as f:
        for sent, which, status in sorted(results):
            f.write(json.dumps({"sent": sent, "header": which, "status": status}) + "\n")
    print("done", len(results), flush=True)


if __name__ == "__main__":
    sys.exit(main())
