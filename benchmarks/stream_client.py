"""Holds many server-sent event streams open, in a process of its own (the streams figure), and
times each chunk from the model's `yield` (the wall-clock time the chunk carries) to here.

    python -m benchmarks.stream_client BASE AUTH PATHS_FILE

PATHS_FILE holds a JSON list of the stream paths to open (one stream each). Prints
`STREAMS_OPEN` once every stream has its response headers, then, when all have ended, one
`STREAMS_JSON {...}` line: every chunk's lag in seconds, failures, chunks per stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


def _stamp(data: str) -> float:
    """The yield time in a chunk: our task chunks carry it as the message's `text`, the peer
    sends it bare."""
    value = json.loads(data)
    return float(value["text"] if isinstance(value, dict) else value)


async def main(argv: list[str]) -> int:
    base, auth, paths_file = argv[1:4]
    paths = json.loads(open(paths_file).read())
    lags: list[float] = []
    failures: list[str] = []
    counts: list[int] = []
    opened = 0
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base, timeout=120, limits=limits, headers={"Authorization": auth}
    ) as client:

        async def follow(path: str) -> None:
            nonlocal opened
            received = 0
            try:
                async with client.stream("GET", path) as response:
                    opened += 1
                    if opened == len(paths):
                        print("STREAMS_OPEN", flush=True)
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                        return
                    chunk = False
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            chunk = line == "event: chunk"
                        elif line.startswith("data:") and chunk:
                            lags.append(time.time() - _stamp(line[5:]))
                            received += 1
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            counts.append(received)

        await asyncio.gather(*(follow(path) for path in paths))
    print("STREAMS_JSON " + json.dumps({"lags": lags, "failures": failures, "counts": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
