"""cancel_and_wait: a task that lets one cancellation go (as Python 3.11's wait_for can)
still ends, and a stop never hangs on it."""

from __future__ import annotations

import asyncio

import pytest

from hivewire.tasks import cancel_and_wait


async def _swallows_one_cancel(ended: list[str]) -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pass  # what asyncio.wait_for does when the result and the cancel meet
    try:
        await asyncio.Event().wait()  # back in its loop, waiting for work
    finally:
        ended.append("second cancel")


async def test_a_task_that_swallowed_its_cancel_is_cancelled_again() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_swallows_one_cancel(ended), name="swallower")
    plain = asyncio.create_task(asyncio.sleep(30), name="plain")
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, plain, None, retry_s=0.05), 5)
    assert task.cancelled() and plain.cancelled() and ended == ["second cancel"]


async def test_one_cancel_and_a_gather_would_hang_on_it() -> None:
    """The failure cancel_and_wait exists for: the old idiom never returns."""
    task = asyncio.create_task(_swallows_one_cancel([]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(asyncio.gather(task, return_exceptions=True)), 0.3)
    await cancel_and_wait(task)


async def test_finished_and_failed_tasks_are_collected_quietly() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    done = asyncio.create_task(asyncio.sleep(0))
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0.01)
    await cancel_and_wait(done, failed)
    assert done.done() and isinstance(failed.exception(), RuntimeError)
