"""`ModelInvoker`: how a replica calls its model, for queued tasks and synchronous calls alike.

One request through `process_request` within the model's `timeout_s`; through the batcher
when the model batches (`process_batch`); a streaming model's chunks merged, or relayed one by
one for a synchronous call that streams. Successes fill the model's cache of identical
requests when it has one. Failures of a synchronous call become its `InferOutcome`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from app.core.metrics import BATCH_SIZE, TASK_RUN_TIME, MetricsRecorder
from app.core.redis_scripts import StoreError
from app.inference.cache import ResultCache
from app.inference.outcome import InferOutcome, Outcome
from app.tasks.shapes import CachedResult
from deployments._contract import InvalidInput, ModelSpec
from deployments._runtime.batching import Batcher, check_results
from deployments._runtime.streaming import merged_answer, stream_chunks
from protos.codec import DecodeFailed, message_from_bytes, message_to_json
from protos.descriptors import fingerprint

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


class ModelInvoker:
    """Calls one model instance.

    Args:
        spec: the model's `ModelSpec`.
        model: an instance of the decorated class.
        metrics: where run times and batch sizes are recorded.
        cache: the cache of identical requests (used only when the model sets `cache_ttl_s`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        *,
        metrics: MetricsRecorder,
        cache: ResultCache | None = None,
    ) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.model = model
        self.metrics = metrics
        self._cache = cache if spec.settings.cache_ttl_s else None
        self._fingerprint = fingerprint(spec.request, spec.response)
        self._batcher: Batcher[Message, Message] | None = None
        if self.settings.batching:
            self._batcher = Batcher(
                self.run_batch,
                max_batch_size=self.settings.max_batch_size,
                wait_timeout_s=self.settings.batch_wait_timeout_s,
                on_batch=self._count_batch,
            )

    def _count_batch(self, size: int) -> None:
        self.metrics.observe(BATCH_SIZE, size, self.spec.name, "queue")

    async def remember(self, payload: bytes, answer: CachedResult) -> None:
        """Keep a success in the model's cache (when it has one): best effort."""
        if self._cache is None or self.settings.cache_ttl_s is None:
            return
        key = self._cache.key(self.spec.name, self._fingerprint, self.spec.version, payload)
        try:
            await self._cache.put(key, answer, self.settings.cache_ttl_s)
        except StoreError as exc:
            logger.warning("%s: result not cached: %s", self.spec.name, exc)

    async def answer(
        self, payload: bytes, call: Callable[[Message], Awaitable[Message]] | None = None
    ) -> InferOutcome:
        """Run the model on a request's bytes for a synchronous call (no task, no queue).

        `call` runs the model (the replica's `@serve.batch` path for a batching model); by
        default `process_request`."""
        try:
            request = message_from_bytes(payload, self.spec.request)
        except DecodeFailed as exc:
            return InferOutcome(Outcome.BAD_REQUEST, error=str(exc))
        started = time.perf_counter()
        try:
            response = await (call or self.call)(request)
        except Exception as exc:
            return failed_outcome(exc)
        finally:
            self.metrics.observe(TASK_RUN_TIME, time.perf_counter() - started, self.spec.name)
        if not isinstance(response, self.spec.response):
            return InferOutcome(
                Outcome.MODEL_ERROR,
                error=f"process_request returned {type(response).__name__}, "
                f"expected {self.spec.response.__name__}",
            )
        result = response.SerializeToString()
        if self._cache is not None:  # the JSON form only for the cache (the gateway makes its own)
            await self.remember(payload, CachedResult(result, message_to_json(response)))
        return InferOutcome(Outcome.OK, response=result)

    async def answer_stream(self, payload: bytes) -> AsyncIterator[InferOutcome]:
        """A synchronous call that streams: an OK outcome per chunk as the model yields it
        (one, the whole response, for a model that does not stream), and the error as the
        last outcome if the call fails. The caller going away closes the generator."""
        if not self.spec.streams:
            yield await self.answer(payload)
            return
        try:
            request = message_from_bytes(payload, self.spec.request)
        except DecodeFailed as exc:
            yield InferOutcome(Outcome.BAD_REQUEST, error=str(exc))
            return
        started = time.perf_counter()
        chunks = stream_chunks(self.spec, self.model, request)
        # The model's timeout_s bounds the whole call; each step is awaited within what is
        # left of it (not across a yield, where the caller, not the model, holds things up).
        loop = asyncio.get_running_loop()
        timeout_s = self.settings.timeout_s
        deadline = None if timeout_s is None else loop.time() + timeout_s
        try:
            while True:
                step = anext(chunks)
                try:
                    if deadline is None:
                        chunk = await step
                    else:
                        chunk = await asyncio.wait_for(step, max(0.0, deadline - loop.time()))
                except StopAsyncIteration:
                    break
                yield InferOutcome(Outcome.OK, response=chunk.SerializeToString())
        except Exception as exc:
            yield failed_outcome(exc)
        finally:
            await chunks.aclose()
            self.metrics.observe(TASK_RUN_TIME, time.perf_counter() - started, self.spec.name)

    async def call(self, request: Message) -> Message:
        """One request through the model: in a batch when the model batches; a streaming
        model's chunks merged."""
        if self.spec.streams:
            merged: Message = await self.bounded(merged_answer(self.spec, self.model, request))
            return merged
        if self._batcher is not None:
            return await self._batcher.submit(request)
        response: Message = await self.bounded(self.model.process_request(request))
        return response

    async def run_batch(self, requests: list[Message]) -> Sequence[Message | BaseException]:
        """One `process_batch` call: a result (or an exception) per request, in order.

        Raises what the call raised, a timeout, or `BatchMismatch` for a wrong-length answer:
        every request of the batch then has that outcome."""
        return check_results(await self.bounded(self.model.process_batch(requests)), len(requests))

    async def bounded(self, call: Awaitable[Any]) -> Any:
        """Await a model call within the model's `timeout_s`."""
        if self.settings.timeout_s is None:
            return await call
        return await asyncio.wait_for(call, timeout=self.settings.timeout_s)

    async def close(self) -> None:
        """Release the batcher (after the consumer stopped)."""
        if self._batcher is not None:
            await self._batcher.close()


def failed_outcome(exc: Exception) -> InferOutcome:
    """What a synchronous call answers when the model raised `exc`."""
    if isinstance(exc, InvalidInput):
        return InferOutcome(Outcome.INVALID_INPUT, error=str(exc))
    outcome = Outcome.TIMEOUT if isinstance(exc, TimeoutError) else Outcome.MODEL_ERROR
    return InferOutcome(outcome, error=error_text(exc))


def error_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "process_request timed out"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]
