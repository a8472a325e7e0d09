"""Dynamic batching of queued tasks: single requests in, one `process_batch` call per group.

Each task's handler submits its request and awaits its own answer, so everything per task
(its record, retries, failure, ack) stays as it is for unbatched models; only the model call
is shared. A batch runs when it holds `max_batch_size` requests or when its first request has
waited `wait_timeout_s`, whichever comes first; batches run one at a time, the next one
filling while the model works. (Synchronous calls batch through Ray Serve's `@serve.batch`
with the same settings, in the replica.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class BatchMismatch(Exception):  # noqa: N818 - an outcome of the model call
    """`process_batch` answered with a different number of results than it got requests."""


def check_results(results: Any, expected: int) -> Sequence[Any]:
    """The results of one batch call, or `BatchMismatch` saying what was wrong."""
    if not isinstance(results, list | tuple):
        raise BatchMismatch(f"process_batch returned {type(results).__name__}, expected a list")
    if len(results) != expected:
        raise BatchMismatch(
            f"process_batch returned {len(results)} results for {expected} requests"
        )
    return results


@dataclass
class _Pending(Generic[Req]):
    request: Req
    answer: asyncio.Future[Any]
    arrived: float


class Batcher(Generic[Req, Resp]):
    """Groups requests into calls of `call` (the model's `process_batch`).

    Args:
        call: runs one batch; returns one result per request, each a response or an
            exception for that request alone. An exception it raises is every request's.
        max_batch_size: most requests per call.
        wait_timeout_s: longest the first request of a batch waits for others.
        on_batch: told the size of each batch that runs (a metric).
    """

    def __init__(
        self,
        call: Callable[[list[Req]], Awaitable[Sequence[Resp | BaseException]]],
        *,
        max_batch_size: int,
        wait_timeout_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._call = call
        self._max = max_batch_size
        self._wait_s = wait_timeout_s
        self._on_batch = on_batch
        self._pending: deque[_Pending[Req]] = deque()
        self._arrived = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def submit(self, request: Req) -> Resp:
        """The response to `request`, once its batch ran; raises the request's exception.

        Cancelling the caller withdraws the request if its batch has not started (and drops
        its result if it has)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Pending(request, answer, loop.time()))
        self._arrived.set()
        if self._loop_task is None or self._loop_task.done():
            # An empty context: what the batch call does (e.g. progress reports) must not
            # land on whichever task happened to start the loop.
            self._loop_task = loop.create_task(self._run(), context=contextvars.Context())
        result: Resp = await answer
        return result

    async def close(self) -> None:
        """Stop the loop; requests still waiting are cancelled."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
        while self._pending:
            self._pending.popleft().answer.cancel()

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._execute(batch)

    async def _next_batch(self) -> list[_Pending[Req]]:
        """Wait for a first live request, then until the batch is full or its window ends."""
        loop = asyncio.get_running_loop()
        while True:
            self._drop_withdrawn()
            if self._pending:
                break
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].arrived + self._wait_s
        while len(self._pending) < self._max:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
            self._drop_withdrawn()
        batch: list[_Pending[Req]] = []
        while self._pending and len(batch) < self._max:
            item = self._pending.popleft()
            if not item.answer.done():
                batch.append(item)
        return batch

    def _drop_withdrawn(self) -> None:
        self._pending = deque(p for p in self._pending if not p.answer.done())

    async def _execute(self, batch: list[_Pending[Req]]) -> None:
        if not batch:
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            results = check_results(await self._call([p.request for p in batch]), len(batch))
        except asyncio.CancelledError:
            for item in batch:
                item.answer.cancel()
            raise
        except Exception as exc:  # the whole call failed: every request gets the error
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(exc)
            return
        for item, result in zip(batch, results, strict=True):
            if item.answer.done():
                continue  # withdrawn while the batch ran
            if isinstance(result, BaseException):
                item.answer.set_exception(result)
            else:
                item.answer.set_result(result)
