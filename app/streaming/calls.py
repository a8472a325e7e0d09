"""A synchronous call that streams: the model's chunks as server-sent events as they come.

The first outcome is awaited before the answer starts, so a call the model refuses at once
keeps its HTTP status (422, 502, 504...); an error after the first chunk can only be an event.
The caller's stream lease is held until the stream ends, and a client that goes away closes
the outcomes, which stops the model's generator.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse

from app.inference.outcome import InferOutcome, Outcome, outcome_error

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class CallEvents(ABC):
    """How one kind of streamed call writes its events: each chunk (the response message's
    bytes in, SSE text out), the end, an error after the first chunk."""

    @abstractmethod
    def chunk(self, response: bytes) -> str: ...

    @abstractmethod
    def done(self) -> str: ...

    def error(self, outcome: InferOutcome) -> str:
        error = outcome_error(outcome)
        body = json.dumps({"error": error.code, "detail": error.detail})
        return f"event: error\ndata: {body}\n\n"


async def stream_call(
    outcomes: AsyncIterator[InferOutcome],
    events: CallEvents,
    *,
    on_end: Callable[[], Awaitable[None]],
) -> StreamingResponse:
    """The answer to a streamed call; `on_end` runs once the stream is over, however.

    Raises:
        AppError: the model's first outcome was an error (the call's HTTP error).
    """
    try:
        first = await anext(outcomes, None)
        if first is not None and first.outcome is not Outcome.OK:
            raise outcome_error(first)
    except BaseException:
        await _close(outcomes)
        await on_end()
        raise

    async def body() -> AsyncIterator[str]:
        try:
            if first is not None:
                yield events.chunk(first.response)
                async for outcome in outcomes:
                    if outcome.outcome is not Outcome.OK:
                        yield events.error(outcome)
                        return
                    yield events.chunk(outcome.response)
            yield events.done()
        finally:
            await _close(outcomes)
            await on_end()

    return StreamingResponse(body(), media_type=EVENT_STREAM, headers=STREAM_HEADERS)


async def _close(outcomes: AsyncIterator[InferOutcome]) -> None:
    close = getattr(outcomes, "aclose", None)
    if close is not None:
        await close()
