"""Redis scripts: loaded from `.lua` files, and called in pipelines, one per event-loop tick.

**Scripts are files.** Every script that changes state lives in a `.lua` file beside the
module that calls it (in its package's `lua/` folder), named after the operation it performs,
with the KEYS and ARGV it takes and what it returns written at its top, as BullMQ keeps its
commands. A line `--- @include "<path>"` inlines another file (a path relative to the
including file; each file once), so helpers shared by several scripts (the task states, a
token bucket) are written once. `load_script` reads a script and its includes once, when the
calling module is imported.

**Calls are batched.** `ScriptBatcher`: Lua script calls made in the same event-loop tick go
to Redis as one pipeline.

A replica runs up to its prefetch count of tasks at once, and their state writes tend to fall
in the same tick (a burst of deliveries arrives in one read). Sending them as one pipeline
instead of one round trip each is what a profile of the consumer asked for: per-command client
overhead was its largest cost. Scripts go by EVALSHA; redis-py's own pipelined scripts would
ask SCRIPT EXISTS on every execute, another round trip. A Redis that lost its scripts (a
restart) answers NOSCRIPT, and those calls are loaded and sent once more. Each call still gets
its own result or error.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError


class StoreError(RuntimeError):
    """Redis could not be reached or answered with an error."""


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn any Redis or socket error raised inside into a `StoreError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(str(exc) or type(exc).__name__) from exc


@dataclass(frozen=True)
class LuaScript:
    """A script's source (includes resolved) and the SHA-1 Redis knows it by."""

    source: str
    name: str = ""
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324 - Redis names scripts by SHA-1


SCRIPTS_FOLDER = "lua"
_INCLUDE = re.compile(r'^--- @include "([^"]+)"[ \t]*$', re.MULTILINE)


def load_script(module_file: str, name: str) -> LuaScript:
    """The script `<name>.lua` of the `lua/` folder beside `module_file` (a `__file__`).

    Raises:
        FileNotFoundError: no such script, or an include it names is missing.
    """
    path = Path(module_file).resolve().parent / SCRIPTS_FOLDER / f"{name}.lua"
    return LuaScript(_resolved(path, set()), name=name)


def _resolved(path: Path, seen: set[Path]) -> str:
    """The text of `path` with each include inlined once (a repeated include is dropped)."""
    seen.add(path)
    text = path.read_text()

    def include(match: re.Match[str]) -> str:
        target = (path.parent / match.group(1)).resolve()
        if target in seen:
            return f"-- (included above: {match.group(1)})"
        return _resolved(target, seen).rstrip("\n")

    return _INCLUDE.sub(include, text)


_Call = tuple[LuaScript, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._flush_scheduled = False

    async def call(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        """Run `script` with `keys` and `args` in the next pipeline; return its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(lambda: loop.create_task(self._flush()))
        return await future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._flush_scheduled = False
        try:
            results = await self._execute(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                for script in {batch[i][0] for i in missing}:
                    await self._redis.script_load(script.source)
                retried = await self._execute([batch[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
        except BaseException as exc:  # connection errors fail every call of the batch
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
