"""ASGI middleware recording the gateway's HTTP metrics (plain ASGI: no per-request task)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import HTTP_LATENCY, MetricsRecorder


class MetricsMiddleware:
    """Times every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp, recorder: MetricsRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.recorder.observe(
                HTTP_LATENCY,
                time.perf_counter() - started,
                template,
                scope.get("method", ""),
                str(status),
            )
