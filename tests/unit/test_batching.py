"""The queue-side batcher, with no service: grouping by count and by time, per-item outcomes,
a failing call, a wrong-length answer, withdrawn requests."""

from __future__ import annotations

import asyncio

import pytest

from deployments._runtime.batching import Batcher, BatchMismatch


class Recorder:
    """A `process_batch` stand-in that records the batches it gets."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s

    async def __call__(self, requests: list[int]) -> list[int | BaseException]:
        self.batches.append(list(requests))
        await asyncio.sleep(self.delay_s)
        return [ValueError(f"odd {r}") if r < 0 else r * 10 for r in requests]


async def test_groups_by_count__full_batches_run_without_waiting_out_the_window():
    model = Recorder()
    sizes: list[int] = []
    batcher = Batcher(model, max_batch_size=4, wait_timeout_s=30, on_batch=sizes.append)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in range(8))), timeout=5
    )
    assert results == [i * 10 for i in range(8)]
    assert model.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sizes == [4, 4]
    await batcher.close()


async def test_groups_by_time__a_short_batch_runs_when_the_window_ends():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=32, wait_timeout_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.gather(*(batcher.submit(i) for i in range(3)))
    assert await first == [0, 10, 20]
    waited = loop.time() - started
    assert 0.04 <= waited < 1.0
    # Arrivals after the window make a batch of their own.
    assert await batcher.submit(7) == 70
    assert model.batches == [[0, 1, 2], [7]]
    await batcher.close()


async def test_requests_arriving_while_a_batch_runs_form_the_next_batch():
    model = Recorder(delay_s=0.1)
    batcher = Batcher(model, max_batch_size=8, wait_timeout_s=0.0)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.02)  # the first batch (of one) is running
    rest = asyncio.gather(*(batcher.submit(i) for i in range(2, 6)))
    assert await first == 10
    assert await rest == [20, 30, 40, 50]
    assert model.batches == [[1], [2, 3, 4, 5]]
    await batcher.close()


async def test_each_item_keeps_its_own_outcome():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=4, wait_timeout_s=1)
    calls = [asyncio.create_task(batcher.submit(i)) for i in (1, -2, 3, -4)]
    await asyncio.wait(calls)
    assert model.batches == [[1, -2, 3, -4]]  # one call
    assert calls[0].result() == 10 and calls[2].result() == 30
    for call, text in ((calls[1], "odd -2"), (calls[3], "odd -4")):
        with pytest.raises(ValueError, match=text):
            call.result()  # raised to that caller alone, not handed over as a value
    await batcher.close()


async def test_a_call_that_raises_fails_every_request_of_its_batch_and_the_loop_goes_on():
    calls = 0

    async def flaky(requests: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("out of memory")
        return requests

    batcher = Batcher(flaky, max_batch_size=2, wait_timeout_s=1)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["out of memory", "out of memory"]
    assert await asyncio.gather(batcher.submit(3), batcher.submit(4)) == [3, 4]
    await batcher.close()


async def test_a_wrong_length_answer_is_every_request_s_error():
    async def short(requests: list[int]) -> list[int]:
        return requests[:-1]

    batcher = Batcher(short, max_batch_size=3, wait_timeout_s=1)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, BatchMismatch) for o in outcomes)
    assert "2 results for 3 requests" in str(outcomes[0])
    await batcher.close()


async def test_a_withdrawn_request_never_reaches_the_model():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=4, wait_timeout_s=0.1)
    withdrawn = asyncio.create_task(batcher.submit(1))
    kept = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    withdrawn.cancel()
    assert await kept == 20
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    assert model.batches == [[2]]
    await batcher.close()


async def test_close_cancels_waiting_requests():
    model = Recorder()
    batcher = Batcher(model, max_batch_size=4, wait_timeout_s=30)
    waiting = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.01)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert model.batches == []
