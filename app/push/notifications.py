"""`TaskNotifications`: one Redis subscriber per gateway replica that wakes its local waiters.

Every state write publishes the fields it wrote, with the task's sequence number, on the task's
channel (`ResultStore.events_channel`). A gateway replica subscribes to the channel of a task
only while somebody here waits on it, over one connection; however many clients wait on one
task, they share one subscription, one record and one future for its final state. Nobody polls
Redis while waiting.

A streaming model's chunks come on the same channel (`ResultStore.add_chunk`) with their
number and JSON text, and go to the watches that asked for them (`watch(..., chunks=True)`,
the event streams) as they are: one Redis read fans out to every client of the task. A chunk
notification lost while the connection was down shows as a gap in chunk numbers (or a final
record naming more chunks than were sent), and the stream reads the missing ones from the
task's chunk list.

Nothing may strand a waiter: a notification lost while the connection was down is made up by
re-reading the record after every (re)subscribe, a gap in sequence numbers triggers a re-read,
and a waiter whose deadline comes re-reads the record itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.core.lifecycle import TaskRecord, TaskStatus
from app.core.redis_scripts import StoreError
from app.push.watch import CHUNK_PREFIX, Chunk, Topic, Watch
from app.tasks.shapes import Transition, now
from app.tasks.store import ResultStore

logger = logging.getLogger(__name__)

# Pause between reconnect attempts of the subscriber connection.
RECONNECT_DELAY_S = 0.5
# How long a read on the subscriber connection may block before the loop looks around (health
# checks run then, so a half-open connection is noticed).
READ_SLICE_S = 1.0
# How many times the I/O timeout a connected subscriber may take to confirm a subscription.
SUBSCRIBE_WAIT_FACTOR = 6
# Waiters woken in one turn of the event loop; the next ones wait for the next turn, so a burst
# of finished tasks with thousands of waiters does not hold up requests arriving meanwhile.
WAKE_SLICE = 64


class TaskNotifications:
    """The gateway replica's subscriber.

    Args:
        store: where records are re-read.
        redis_url: the Redis that the store's scripts publish on.
        timeout_s: bound on subscribing (and on each connect attempt).
    """

    def __init__(self, store: ResultStore, redis_url: str, *, timeout_s: float) -> None:
        self._store = store
        # No retries inside redis-py: a dropped connection must reach this loop, which then
        # re-subscribes and re-reads every watched record.
        self._redis = Redis.from_url(
            redis_url,
            # Named, so an operator (or a test) can find this connection in CLIENT LIST.
            client_name=f"{store.prefix}:task-notifications",
            socket_connect_timeout=timeout_s,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        self._timeout_s = timeout_s
        self._topics: dict[str, Topic] = {}
        self._by_channel: dict[bytes, Topic] = {}
        self._pubsub: Any = None
        self._connected = asyncio.Event()
        # (Un)subscribe commands go out one at a time, so an unsubscribe of a task nobody
        # watches any more can never overtake a new waiter's subscribe to the same channel.
        self._commands = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.reconnects = 0
        self._closing = False
        # Final records to hand to their waiters, a slice per loop turn (`_wake`).
        self._finals: collections.deque[tuple[Topic, TaskRecord]] = collections.deque()
        self._waker: asyncio.Task[None] | None = None
        # Told when a deadline this hub watched made a task `expired` (webhooks, metrics).
        self.on_expired: Callable[[str, str, Transition], Awaitable[None]] | None = None

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def close(self) -> None:
        self._closing = True
        if self._waker is not None:
            self._waker.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._redis.aclose()

    def current(self, task_id: str) -> TaskRecord | None:
        """The record of a task somebody here already waits on (kept current by its
        notifications), so another waiter need not read it from Redis."""
        topic = self._topics.get(task_id)
        if topic is None or not topic.ready.done() or topic.ready.exception() is not None:
            return None
        if not topic.subscribed.done() or not self._connected.is_set():
            return None
        return topic.record

    @property
    def watched(self) -> int:
        """Tasks somebody in this process waits on."""
        return len(self._topics)

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str, *, chunks: bool = False) -> AsyncIterator[Watch]:
        """Wait on `task_id` inside the block; the record is current when the block starts.
        With `chunks`, the watch also hands over the chunks notified from then on.

        Raises:
            StoreError: Redis cannot be reached (no subscription could be made).
        """
        topic = self._topics.get(task_id)
        if topic is None:
            topic = Topic(task_id, self._store.events_channel(task_id))
            self._topics[task_id] = topic
            self._by_channel[topic.channel.encode()] = topic
            try:
                await self._open(topic)
            except BaseException as exc:
                self._drop(topic)
                if not topic.ready.done():
                    topic.ready.set_exception(StoreError(f"cannot watch task: {exc!r}"))
                    topic.ready.exception()  # retrieved: other waiters may not exist
                raise
        else:
            await asyncio.shield(topic.ready)
        watch = Watch(self, topic, chunks=chunks)
        topic.watches.add(watch)
        try:
            yield watch
        finally:
            topic.watches.discard(watch)
            if not topic.watches and self._topics.get(task_id) is topic:
                self._drop(topic)
                await self._unsubscribe(topic)

    async def _open(self, topic: Topic) -> None:
        try:
            # Down is down: a waiter hears 503 at once. Connected but slow to confirm (a busy
            # event loop under a flood of arriving waiters) is waited for longer.
            async with asyncio.timeout(self._timeout_s):
                await self._connected.wait()
            async with self._commands:
                await self._pubsub.subscribe(topic.channel)
            async with asyncio.timeout(SUBSCRIBE_WAIT_FACTOR * self._timeout_s):
                await asyncio.shield(topic.subscribed)
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"cannot subscribe to task changes: {exc!r}") from exc
        # Subscribed first, read second: no change can fall between the two.
        record = await self._store.get(topic.task_id)
        if record is None:
            raise StoreError("task record vanished")  # expired between the caller's read and now
        self._advance(topic, record)
        topic.ready.set_result(None)

    def _drop(self, topic: Topic) -> None:
        self._topics.pop(topic.task_id, None)
        self._by_channel.pop(topic.channel.encode(), None)
        if topic.expiry is not None:
            topic.expiry.cancel()
        if topic.reload is not None:
            topic.reload.cancel()
        if not topic.final.done():
            topic.final.cancel()

    async def _unsubscribe(self, topic: Topic) -> None:
        async with self._commands:
            if self._pubsub is None or not self._connected.is_set():
                return
            if topic.task_id in self._topics:  # watched again meanwhile
                return
            try:
                await self._pubsub.unsubscribe(topic.channel)
            except (RedisError, OSError) as exc:
                logger.debug("unsubscribe failed (the reconnect will drop it): %s", exc)

    # ---- what a notification or a re-read does -------------------------------------------

    def _advance(self, topic: Topic, record: TaskRecord) -> None:
        """Hand a newer record to every waiter of the topic."""
        if topic.record is not None and record.seq <= topic.record.seq:
            return
        topic.record = record
        if record.status.is_final:
            self._finals.append((topic, record))
            if self._waker is None or self._waker.done():
                self._waker = asyncio.get_running_loop().create_task(self._wake())
        else:
            for watch in topic.watches:
                watch._push(record)
        self._schedule_expiry(topic, record)

    async def _wake(self) -> None:
        """Hand final records to their waiters, at most `WAKE_SLICE` waiters per loop turn:
        in between, the loop reads new requests (each answer is serialized once, however
        many waiters send it: `TaskRecord.document_json`)."""
        woken = 0
        while self._finals:
            topic, record = self._finals.popleft()
            for watch in topic.watches:
                watch._push(record)
            if not topic.final.done():
                topic.final.set_result(record)
            woken += max(1, len(topic.watches))
            if woken >= WAKE_SLICE:
                woken = 0
                await asyncio.sleep(0)

    def _schedule_expiry(self, topic: Topic, record: TaskRecord) -> None:
        """A pending task with a deadline expires at it, even with no replica to notice."""
        if topic.expiry is not None or record.status is not TaskStatus.PENDING:
            return
        deadline = record.deadline
        if deadline is None or record.attempts:
            return
        loop = asyncio.get_running_loop()
        topic.expiry = loop.call_later(
            max(0.0, deadline - now()),
            lambda: loop.create_task(self._expire(topic)),
        )

    async def _expire(self, topic: Topic) -> None:
        try:
            transition = await self._store.expire_if_due(topic.task_id)
            if self.on_expired is not None and topic.record is not None:
                await self.on_expired(topic.task_id, topic.record.model, transition)
        except StoreError as exc:
            logger.warning("task %s: could not expire it: %s", topic.task_id, exc)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        topic = self._by_channel.get(channel)
        if topic is None or topic.record is None:
            return
        if data.startswith(CHUNK_PREFIX):
            chunk = Chunk.parse(data)
            for watch in topic.watches:
                if watch.chunks:
                    watch._push(chunk)
            return
        fields = ResultStore.parse_event(data)
        seq = int(fields.get("seq", 0))
        topic.notified_seq = max(topic.notified_seq, seq)
        current = topic.record
        if seq <= current.seq:
            return
        final = TaskStatus(fields["status"]).is_final
        if seq == current.seq + 1 and not final and (topic.reload is None or topic.reload.done()):
            self._advance(topic, current.merged(fields))
        else:
            # A final state needs its result, which notifications do not carry; a gap means
            # a notification was lost: both are read from Redis.
            self._reload(topic)

    def _reload(self, topic: Topic) -> None:
        if topic.reload is None or topic.reload.done():
            topic.reload = asyncio.get_running_loop().create_task(self._read_until_current(topic))

    async def _read_until_current(self, topic: Topic) -> None:
        try:
            while True:
                record = await self._store.get(topic.task_id)
                if record is None:
                    return
                self._advance(topic, record)
                if record.seq >= topic.notified_seq:
                    return
        except StoreError as exc:
            # Waiters re-read at their own deadlines; the next notification tries again.
            logger.warning("task %s: re-read failed: %s", topic.task_id, exc)

    async def reread(self, topic: Topic) -> TaskRecord:
        """Read the record now (a waiter's deadline came); share what it shows."""
        record = await self._store.get(topic.task_id)
        if record is None:
            assert topic.record is not None  # noqa: S101
            return topic.record
        self._advance(topic, record)
        return topic.record or record

    # ---- the subscriber connection ---------------------------------------------------

    async def _read_forever(self) -> None:
        while not self._closing:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection dropped: reconnect, resubscribe, re-read
                if self._closing or _cancelling():
                    # redis-py may turn a cancelled read into a connection error.
                    raise asyncio.CancelledError from exc
                logger.warning("task notifications: connection lost (%r); reconnecting", exc)
            self._connected.clear()
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                self._pubsub = None
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _session(self) -> None:
        """One connection's life: subscribe to everything watched, re-read it, then listen."""
        pubsub = self._redis.pubsub()
        self._pubsub = pubsub
        # A channel of its own keeps the connection subscribed with no waiter at all.
        await pubsub.subscribe(f"{self._store.prefix}:events")
        resubscribing = list(self._topics.values())
        for topic in resubscribing:
            if topic.subscribed.done():
                topic.subscribed = asyncio.get_running_loop().create_future()
        if resubscribing:
            await pubsub.subscribe(*(topic.channel for topic in resubscribing))
            self.reconnects += 1
        self._connected.set()
        # Checked each slice: on Python 3.11 a cancel landing as a read times out can come
        # back as a plain timeout, so the flag, not the cancellation, ends this loop.
        while not self._closing:
            message = await pubsub.get_message(timeout=READ_SLICE_S)
            if message is None:
                continue
            kind = message["type"]
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "message":
                self._on_message(message["channel"], message["data"])
            elif kind == "subscribe":
                subscribed = self._by_channel.get(message["channel"])
                if subscribed is not None and not subscribed.subscribed.done():
                    subscribed.subscribed.set_result(None)
                    if subscribed.ready.done():
                        # Resubscribed after a reconnect: whatever happened meanwhile is read.
                        self._reload(subscribed)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
