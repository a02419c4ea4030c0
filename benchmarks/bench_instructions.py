"""Instructions per request, protected over bare, counted by valgrind.

On a shared machine wall-clock ratios swing with the neighbours' load;
instruction counts do not (``valgrind --tool=callgrind`` counts the same for
the same program and inputs, whatever else runs). They are a proxy for time,
not time: they leave out system calls and cache misses, which the database
lookup has and a bare request has not. Use it to compare changes to the
request path; report wall-clock ratios from ``bench_protect.py``.

Run (needs Debian's ``valgrind``)::

    .venv/bin/python benchmarks/bench_instructions.py            # 1,000 tokens
    .venv/bin/python benchmarks/bench_instructions.py --tokens 100000

Each variant runs twice under callgrind, with a few and with many requests;
the difference divided by the extra requests is the cost of one request,
with start-up and warm-up subtracted out.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(variant: str, tokens: int, requests: int) -> None:
    sys.path.insert(0, str(HERE))
    import bench_protect

    folder = tempfile.mkdtemp()
    _, bare, protected, _, _ = bench_protect.accesstokens_app(
        os.path.join(folder, "tokens.sqlite"), tokens
    )
    call = {"bare": bare, "protected": protected}[variant]
    for _ in range(50):  # warm: compiled statement, row cache, Jinja, imports
        bare()
        protected()
    for _ in range(requests):
        call()
    shutil.rmtree(folder)


def count(variant: str, tokens: int, requests: int) -> int:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/cg",
                sys.executable,
                __file__,
                "--child",
                variant,
                "--tokens",
                str(tokens),
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=True,
            # One hash seed: dict and set layouts, and so the counts, repeat.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tokens, args.requests)
        return 0
    if shutil.which("valgrind") is None:
        print("needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 1
    per_request = {}
    for variant in ("bare", "protected"):
        few = count(variant, args.tokens, 100)
        many = count(variant, args.tokens, 100 + args.requests)
        per_request[variant] = (many - few) / args.requests
        print(f"{variant:>10}: {per_request[variant]:,.0f} instructions per request")
    print(f"protected / bare: {per_request['protected'] / per_request['bare']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
