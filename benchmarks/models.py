"""Models used only by the benchmarks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from deployments.sdk import model
from protos.echo_pb2 import EchoRequest, EchoResponse


@model(name="bench-noop", request=EchoRequest, response=EchoResponse, num_cpus=0)
class Noop:
    """Answers at once: measures the platform, not a model."""

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        return EchoResponse(text=request.text)


@model(
    name="bench-cpu",
    request=EchoRequest,
    response=EchoResponse,
    # Two replicas must fit beside the gateway on a 2-CPU Ray node; each still keeps a core busy.
    num_cpus=0.5,
    max_concurrency=1,
)
class Busy:
    """Keeps a CPU busy for 20 ms per task (a small model's inference)."""

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        end = time.perf_counter() + 0.020
        while time.perf_counter() < end:
            pass
        return EchoResponse(text=request.text)


@model(name="bench-ticker", request=EchoRequest, response=EchoResponse, num_cpus=0)
class Ticker:
    """Streams `chunks=N every_ms=M after_ms=A` (its request's text): N chunks M ms apart, the
    first after A ms; each chunk's text is the wall-clock time it was yielded at."""

    async def process_request(self, request: EchoRequest) -> AsyncIterator[EchoResponse]:
        plan = dict(part.split("=") for part in request.text.split())
        await asyncio.sleep(int(plan["after_ms"]) / 1000)
        for index in range(int(plan["chunks"])):
            if index:
                await asyncio.sleep(int(plan["every_ms"]) / 1000)
            yield EchoResponse(text=repr(time.time()))
