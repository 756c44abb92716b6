"""The micro-batcher: concurrent requests share forward passes, each gets its own rows back."""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt
import pytest

from fedbus_gateway.predict import MicroBatcher

Rows = npt.NDArray[np.float32]


class Model:
    """Doubles its input; records the rows of each forward pass."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, rows: Rows) -> Rows:
        self.calls.append(len(rows))
        if self.fail:
            raise RuntimeError("the model broke")
        return rows * 2


async def direct(forward: object, rows: Rows) -> Rows:
    assert callable(forward)
    out: Rows = forward(rows)
    return out


def row(value: float, n: int = 1) -> Rows:
    return np.full((n, 3), value, dtype=np.float32)


async def test_concurrent_requests_share_one_forward_pass_and_get_their_own_rows() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_rows=64, max_wait_s=0.05, run=direct)

    answers = await asyncio.gather(*(batcher.submit(row(i)) for i in range(10)))

    assert model.calls == [10]
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, row(2 * i))


async def test_a_full_batch_runs_without_waiting_and_batches_hold_at_most_max_rows() -> None:
    model = Model()
    # An hour's wait: only a full batch (or the queue behind a running one) can end it.
    batcher = MicroBatcher(model, max_rows=4, max_wait_s=3600, run=direct)

    answers = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(row(i)) for i in range(8))), timeout=10
    )

    assert model.calls == [4, 4]
    assert [float(a[0, 0]) for a in answers] == [2.0 * i for i in range(8)]


async def test_requests_of_several_rows_are_kept_whole() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_rows=5, max_wait_s=0.05, run=direct)

    answers = await asyncio.gather(
        batcher.submit(row(1, 3)), batcher.submit(row(2, 3)), batcher.submit(row(3, 1))
    )

    assert model.calls == [3, 4]  # 3 + 3 > 5: the second request opens the next batch
    assert [a.shape[0] for a in answers] == [3, 3, 1]
    np.testing.assert_array_equal(answers[1], row(4, 3))


async def test_a_request_larger_than_max_rows_runs_alone() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_rows=4, max_wait_s=0.01, run=direct)

    big, small = await asyncio.gather(batcher.submit(row(1, 9)), batcher.submit(row(2)))

    assert model.calls == [9, 1]
    assert big.shape == (9, 3)
    assert small.shape == (1, 3)


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_rows=64, max_wait_s=0.001, run=direct)

    answer = await asyncio.wait_for(batcher.submit(row(5)), timeout=5)

    np.testing.assert_array_equal(answer, row(10))
    assert model.calls == [1]


async def test_a_failing_forward_pass_fails_every_request_of_its_batch_and_not_later_ones() -> None:
    model = Model(fail=True)
    batcher = MicroBatcher(model, max_rows=64, max_wait_s=0.05, run=direct)

    results = await asyncio.gather(
        *(batcher.submit(row(i)) for i in range(3)), return_exceptions=True
    )
    model.fail = False
    later = await batcher.submit(row(1))

    assert all(isinstance(r, RuntimeError) for r in results)
    np.testing.assert_array_equal(later, row(2))


async def test_a_cancelled_request_is_left_out_of_the_batch() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_rows=64, max_wait_s=0.05, run=direct)

    gone = asyncio.create_task(batcher.submit(row(1)))
    await asyncio.sleep(0)  # queued
    gone.cancel()
    kept = await batcher.submit(row(2))

    assert model.calls == [1]
    np.testing.assert_array_equal(kept, row(4))


async def test_the_default_runner_uses_a_thread() -> None:
    batcher = MicroBatcher(Model(), max_rows=8, max_wait_s=0.0)

    answers = await asyncio.gather(*(batcher.submit(row(i)) for i in range(3)))

    assert [float(a[0, 0]) for a in answers] == [0.0, 2.0, 4.0]


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        MicroBatcher(Model(), max_rows=0)


async def test_without_a_flush_window_a_lone_request_runs_at_once() -> None:
    model = Model()
    batcher = MicroBatcher(model, run=direct)  # max_wait_s 0: the default

    task = asyncio.create_task(batcher.submit(row(5)))
    for _ in range(3):  # a few passes of the event loop, no timer
        await asyncio.sleep(0)

    assert model.calls == [1]
    np.testing.assert_array_equal(await task, row(10))


async def test_requests_that_arrive_during_a_forward_pass_make_the_next_batch() -> None:
    release = asyncio.Event()
    model = Model()

    async def held(forward: object, rows: Rows) -> Rows:
        await release.wait()  # the forward pass "runs" until released
        return await direct(forward, rows)

    batcher = MicroBatcher(model, max_rows=4, run=held)
    first = asyncio.create_task(batcher.submit(row(1)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first batch (one row) is running
    later = [asyncio.create_task(batcher.submit(row(i))) for i in range(2, 8)]
    await asyncio.sleep(0)
    release.set()
    answers = await asyncio.gather(first, *later)

    assert model.calls == [1, 4, 2]  # then all that waited, max_rows at a time
    assert [float(a[0, 0]) for a in answers] == [2.0 * i for i in range(1, 8)]
