"""Cancelling a background task so that it stays cancelled.

Python 3.11's `asyncio.wait_for` can swallow a cancellation that arrives just as the future
it waits for completes (CPython gh-86296, fixed in 3.12): the task goes on as if it had never
been cancelled. The mail outbox met it when stopped right as its SMTP connection was made:
the send went on to wait its whole timeout for the server's greeting, and the stop with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any], every: float = 1.0) -> None:
    """Cancel `task`, again every `every` seconds until it has ended; its own exception, if
    it ended with one other than the cancellation, is raised here. `every` is long enough
    for what a task does when cancelled (the outbox puts a mail back in the queue) to finish
    before another cancellation could cut it short."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    with contextlib.suppress(asyncio.CancelledError):
        await task
