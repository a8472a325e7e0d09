"""lua/release_room.lua (app/sharing): the room left in an owner's window."""

from __future__ import annotations

from app.sharing.fair_share import RELEASE_ROOM
from tests.utils.lua import run


async def test_room_is_the_window_less_the_released_tasks_never_below_zero(redis):
    assert await run(redis, RELEASE_ROOM, ["released"], [3]) == 3
    await redis.zadd("released", {"a": 1, "b": 2})
    assert await run(redis, RELEASE_ROOM, ["released"], [3]) == 1
    await redis.zadd("released", {"c": 3, "d": 4})
    assert await run(redis, RELEASE_ROOM, ["released"], [3]) == 0
