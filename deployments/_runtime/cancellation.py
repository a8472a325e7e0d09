"""`CancelListener`: a replica hears which of its model's running tasks to stop.

The gateway publishes the id of a running task whose owner cancelled it on the model's cancel
channel; every replica of the model hears it, and the one running the task stops the model
call. A message missed while this connection is down does no harm beyond wasted work: the
cancel is also recorded on the task, so whatever the replica finally writes becomes
`cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis

logger = logging.getLogger(__name__)

RECONNECT_DELAY_S = 1.0


class CancelListener:
    """Listens on one channel and hands every task id it hears to `on_cancel`."""

    def __init__(self, redis_url: str, channel: str, on_cancel: Callable[[str], object]) -> None:
        self._redis = Redis.from_url(redis_url, health_check_interval=10)
        self._channel = channel
        self._on_cancel = on_cancel
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._redis.aclose()

    async def _listen_forever(self) -> None:
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                # The flag, not only the cancellation, ends the loop (see app.push.notifications).
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        self._on_cancel(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    # redis-py may turn a cancelled read into a connection error.
                    raise asyncio.CancelledError from exc
                logger.warning("cancel channel %s: %r; reconnecting", self._channel, exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RECONNECT_DELAY_S)
