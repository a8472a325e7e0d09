"""Running one Redis script directly, as its own tests do (no store class in between)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from app.core.redis_scripts import LuaScript


async def run(redis: Redis, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
    """EVAL the script's source (includes resolved) with `keys` and `args`."""
    return await redis.eval(script.source, len(keys), *keys, *args)  # type: ignore[misc]


def text(value: Any) -> Any:
    """Bytes from Redis as text, recursively through lists."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [text(v) for v in value]
    return value
