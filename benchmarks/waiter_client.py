"""Holds long-poll and SSE waiters on a gateway, in a process of its own (the waiters figure):
the process measuring submits beside them is then not the one answering thousands of waiters.

    python -m benchmarks.waiter_client BASE AUTH MODEL IDS_FILE POLLERS STREAMS

Prints `WAITERS_READY` once every waiter has sent its request, then, when all are answered,
one `WAITERS_JSON {...}` line: each answer's lag after its task's final write, and failures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime

import httpx


def _finished_at(document: dict) -> float:
    return datetime.fromisoformat(document["finished_at"]).timestamp()


async def main(argv: list[str]) -> int:
    base, auth, model, ids_file = argv[1:5]
    pollers, streams = int(argv[5]), int(argv[6])
    task_ids = json.loads(open(ids_file).read())
    headers = {"Authorization": auth}
    lags: list[float] = []
    failures: list[int] = []
    limits = httpx.Limits(max_connections=pollers + streams, max_keepalive_connections=0)
    sent = 0
    async with httpx.AsyncClient(base_url=base, timeout=180, limits=limits) as client:

        async def long_poll(task_id: str) -> None:
            nonlocal sent
            sent += 1
            response = await client.get(
                f"/models/{model}/result",
                params={"task_id": task_id, "wait": 120},
                headers=headers,
            )
            if response.status_code != 200:
                failures.append(response.status_code)
                return
            lags.append(time.time() - _finished_at(response.json()))

        async def stream(task_id: str) -> None:
            nonlocal sent
            sent += 1
            async with client.stream(
                "GET", f"/models/{model}/tasks/{task_id}/events", headers=headers
            ) as response:
                if response.status_code != 200:
                    failures.append(response.status_code)
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        document = json.loads(line[5:])
                        if document["status"] in ("succeeded", "failed"):
                            lags.append(time.time() - _finished_at(document))
                            return
            failures.append(0)

        waiters = [long_poll(task_ids[i % len(task_ids)]) for i in range(pollers)] + [
            stream(task_ids[i % len(task_ids)]) for i in range(streams)
        ]
        running = [asyncio.ensure_future(w) for w in waiters]
        while sent < len(running):
            await asyncio.sleep(0.1)
        print("WAITERS_READY", flush=True)
        await asyncio.gather(*running)
    print("WAITERS_JSON " + json.dumps({"lags": lags, "failures": failures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
