"""The task envelope that travels through RabbitMQ: the request message plus who and when."""

from __future__ import annotations

import os
import threading
import time
import uuid

from google.protobuf.message import DecodeError

from protos.codec import PROTOBUF_CONTENT_TYPE
from protos.task_pb2 import Task


class EnvelopeError(ValueError):
    """Bytes on a queue that are not a usable task envelope."""


class _RandomBytes:
    """Bytes of the OS's cryptographic source, read 4 KiB at a time.

    `uuid.uuid4()` reads 16 bytes per call, a system call that releases the GIL; in a busy Ray
    replica, other threads then hold it for up to a switch interval (5 ms), which made uuid4
    a tenth of the gateway's submit time in a profile. One read serves 256 ids.
    """

    CHUNK = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer, self._offset = os.urandom(self.CHUNK), 0
            start = self._offset
            self._offset += count
            return self._buffer[start : start + count]


_RANDOM = _RandomBytes()


def new_task_id() -> str:
    """An unguessable task id (UUID4: 122 bits from the OS's cryptographic source)."""
    return str(uuid.UUID(bytes=_RANDOM.take(16), version=4))


def new_envelope(*, model: str, owner: str, payload: bytes, task_id: str | None = None) -> Task:
    """Build the envelope for a request message already serialized to protobuf bytes."""
    task = Task(
        task_id=task_id or new_task_id(),
        model=model,
        owner=owner,
        payload=payload,
        content_type=PROTOBUF_CONTENT_TYPE,
        attempt=1,
    )
    task.created_at.GetCurrentTime()
    return task


def created_at(task: Task) -> float:
    """The envelope's creation time in epoch seconds (0.0 when unset)."""
    return float(task.created_at.ToNanoseconds() / 1e9)


def decode_envelope(body: bytes) -> Task:
    """Parse and sanity-check an envelope taken from a queue.

    Raises:
        EnvelopeError: not a Task, or a Task without the fields a consumer needs.
    """
    task = Task()
    try:
        task.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise EnvelopeError(f"not a task envelope: {exc}") from exc
    if not task.task_id or not task.model:
        raise EnvelopeError("task envelope lacks task_id or model")
    if task.content_type and task.content_type != PROTOBUF_CONTENT_TYPE:
        raise EnvelopeError(f"unsupported payload content type {task.content_type!r}")
    return task


def now() -> float:
    return time.time()
