"""lua/take_call.lua (app/sharing): a synchronous call's token, with the owner's overrides."""

from __future__ import annotations

from app.sharing.admission import TAKE_CALL
from tests.utils.lua import run, text


async def test_a_call_takes_one_token_of_the_default_bucket(redis):
    raw = text(await run(redis, TAKE_CALL, ["bucket", "limits"], [1, 1]))
    assert raw[0] == 1 and raw[3:] == ["1", "1"]
    assert text(await run(redis, TAKE_CALL, ["bucket", "limits"], [1, 1]))[0] == 0


async def test_the_owners_override_is_the_bucket_in_force(redis):
    await redis.hset("limits", mapping={"submits_per_s": 5, "submit_burst": 7})
    raw = text(await run(redis, TAKE_CALL, ["bucket", "limits"], [1, 1]))
    assert raw[0] == 1 and raw[1] == "6.000" and raw[3:] == ["5", "7"]
