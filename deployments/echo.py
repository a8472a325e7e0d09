"""`echo`: answers with its input after an optional delay; for tests and benchmarks."""

from __future__ import annotations

import asyncio
import os
import socket

from deployments.sdk import InvalidInput, model, serve_app
from protos.echo_pb2 import EchoRequest, EchoResponse

MAX_DELAY_MS = 60_000


@model(
    name="echo",
    request=EchoRequest,
    response=EchoResponse,
    max_attempts=3,
    retry_backoff_s=0.2,
    max_replicas=3,
    num_cpus=0,
)
class Echo:
    """Returns the text it was sent, after `delay_ms`; raises with `fail_with` when set."""

    def __init__(self) -> None:
        self._who = f"{socket.gethostname()}:{os.getpid()}"

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        if request.delay_ms > MAX_DELAY_MS:
            raise InvalidInput(f"delay_ms must be at most {MAX_DELAY_MS}")
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        if request.fail_with:
            raise RuntimeError(request.fail_with)
        return EchoResponse(text=request.text, replica=self._who)


app = serve_app(Echo)
