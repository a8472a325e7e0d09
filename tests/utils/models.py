"""Models used only by tests: they count their calls, report progress, or wait to be told."""

from __future__ import annotations

import asyncio

from deployments.sdk import InvalidInput, model, report_progress
from protos.echo_pb2 import EchoRequest, EchoResponse


@model(name="counting", request=EchoRequest, response=EchoResponse, max_attempts=1)
class Counting:
    """Echo that counts its calls in this process, and says the count in `replica`."""

    calls = 0

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        type(self).calls += 1
        calls = type(self).calls
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        if request.fail_with:
            raise InvalidInput(request.fail_with)
        return EchoResponse(text=request.text, replica=f"calls={calls}")


@model(name="progressing", request=EchoRequest, response=EchoResponse)
class Progressing:
    """Reports half-way progress, waits `delay_ms`, then answers."""

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        await report_progress(0.5, "halfway")
        await asyncio.sleep(request.delay_ms / 1000)
        await report_progress(1.0, "done")
        return EchoResponse(text=request.text)
