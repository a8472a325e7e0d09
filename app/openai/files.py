"""Files of the OpenAI API (`/v1/files`), kept in Redis: batch inputs users upload and the
outputs of their batches. Each belongs to one user (anyone else gets 404) and expires.

Keys: `<prefix>:oai:file:<id>` (a hash: owner, name, purpose, size, times, content) and
`<prefix>:oai:files:<owner>` (the owner's file ids by creation time).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.core.redis_scripts import store_errors
from app.openai.errors import NotFound
from app.openai.schemas import FileObject

PURPOSE_BATCH = "batch"
PURPOSE_OUTPUT = "batch_output"


@dataclass(frozen=True)
class StoredFile:
    meta: FileObject
    owner: str


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class FileStore:
    def __init__(self, redis: Redis, *, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, file_id: str) -> str:
        return f"{self._prefix}:oai:file:{file_id}"

    def _index(self, owner: str) -> str:
        return f"{self._prefix}:oai:files:{owner}"

    async def create(
        self, owner: str, *, filename: str, purpose: str, content: bytes
    ) -> FileObject:
        """Keep `content` for `owner` for `ttl_s` seconds; its file object."""
        now = int(time.time())
        file_id = "file-" + secrets.token_hex(12)
        meta = FileObject(
            id=file_id,
            bytes=len(content),
            created_at=now,
            expires_at=now + self.ttl_s,
            filename=filename,
            purpose=purpose,
        )
        with store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._key(file_id),
                    mapping={
                        "owner": owner,
                        "meta": meta.model_dump_json(),
                        "content": content,
                    },
                )
                pipe.expire(self._key(file_id), self.ttl_s)
                pipe.zadd(self._index(owner), {file_id: now})
                pipe.zremrangebyscore(self._index(owner), "-inf", now - self.ttl_s)
                pipe.expire(self._index(owner), self.ttl_s)
                await pipe.execute()
        return meta

    async def get(self, owner: str, file_id: str) -> FileObject:
        """The file object of one of `owner`'s files.

        Raises:
            NotFound: no such file, expired, or not `owner`'s.
        """
        with store_errors():
            owner_of, meta = await self._redis.hmget(self._key(file_id), ["owner", "meta"])
        if owner_of is None or meta is None or text(owner_of) != owner:
            raise NotFound(f"No such file: {file_id}")
        return FileObject.model_validate_json(meta)

    async def content(self, owner: str, file_id: str) -> bytes:
        """The bytes of one of `owner`'s files (NotFound as `get`)."""
        with store_errors():
            owner_of, content = await self._redis.hmget(self._key(file_id), ["owner", "content"])
        if owner_of is None or content is None or text(owner_of) != owner:
            raise NotFound(f"No such file: {file_id}")
        return content if isinstance(content, bytes) else str(content).encode()

    async def list(self, owner: str, *, limit: int, purpose: str | None = None) -> list[FileObject]:
        """`owner`'s files, newest first."""
        with store_errors():
            ids = await self._redis.zrevrange(self._index(owner), 0, -1)
            metas = []
            if ids:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for file_id in ids:
                        pipe.hget(self._key(text(file_id)), "meta")
                    metas = await pipe.execute()
        files = [FileObject.model_validate_json(m) for m in metas if m is not None]
        if purpose is not None:
            files = [f for f in files if f.purpose == purpose]
        return files[:limit]

    async def delete(self, owner: str, file_id: str) -> None:
        """Delete one of `owner`'s files (NotFound as `get`)."""
        await self.get(owner, file_id)
        with store_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(file_id))
                pipe.zrem(self._index(owner), file_id)
                await pipe.execute()
