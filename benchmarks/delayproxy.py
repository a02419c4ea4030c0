"""A TCP proxy that adds latency, to measure the request path as if the
database were a network hop away::

    python benchmarks/delayproxy.py LISTEN_PORT TARGET_HOST TARGET_PORT --ms 1

Every chunk of bytes is forwarded ``ms / 2`` milliseconds after it arrived,
in each direction, in order: a round trip costs ``ms`` more. Prints
``ready`` once it listens. Runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                break
    except OSError:
        queue.put_nowait((0.0, b""))
    try:
        await sender
    except OSError:
        pass


async def _serve(port: int, host: str, target: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer, delay), _pump(up_reader, writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("host")
    parser.add_argument("target", type=int)
    parser.add_argument("--ms", type=float, default=1.0, help="added round-trip time")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.host, args.target, args.ms / 2000))


if __name__ == "__main__":
    main()
