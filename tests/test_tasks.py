"""cancel_and_wait: a cancellation that Python 3.11's wait_for swallows is made again."""

from __future__ import annotations

import asyncio

import pytest

from hookcast.tasks import cancel_and_wait


async def test_a_cancellation_lost_in_wait_for_is_repeated() -> None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[None] = loop.create_future()

    async def body() -> None:
        await asyncio.wait_for(answer, 10)
        await asyncio.Event().wait()  # only a cancellation ends it: a lost one, never

    task = asyncio.create_task(body())
    await asyncio.sleep(0)  # the task waits in wait_for
    # Done, and cancelled in the same loop iteration: on 3.11 wait_for returns the result
    # and the task goes on to wait for ever (gh-86296); one cancel() would not end it.
    answer.set_result(None)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()


async def test_an_exception_of_the_task_is_raised() -> None:
    async def fails() -> None:
        raise LookupError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match=r"^broken$"):
        await cancel_and_wait(task)


async def test_what_a_cancelled_task_does_on_its_way_out_is_not_cut_short() -> None:
    """The outbox puts a mail back in the queue when cancelled: a database write."""
    cleaned = asyncio.Event()

    async def body() -> None:
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # the write, slower than a tick
            cleaned.set()
            raise

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert cleaned.is_set() and task.cancelled()
