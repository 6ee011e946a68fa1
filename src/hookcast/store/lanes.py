"""The threads transactions run on, with an urgent lane that is served first.

A signal's caller waits for its intake commit (204 once durable); the dispatcher's claims
and outcome writes wait for no one. On SQLite all of them share one thread, and in a FIFO
queue a signal waited behind every claim and outcome batch queued before it: at 500
signals a second, each delivered, signal latency was 6–12 ms at the median. Urgent work
waits only for the transaction in progress."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Lanes(Executor):
    """`workers` threads; `submit` queues in the normal lane, `submit_urgent` in the urgent
    one, which every thread empties first."""

    def __init__(self, workers: int, name: str) -> None:
        self._urgent: deque[_Item] = deque()
        self._normal: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._closed = False
        # Daemon threads: an idle one waits forever, and a Database left open must not keep
        # the process from exiting (close() drains and joins them).
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._put(self._normal, fn, args, kwargs)

    def submit_urgent(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self._put(self._urgent, fn, args, {})

    def _put(
        self,
        lane: deque[_Item],
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            lane.append((future, fn, args, kwargs))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not (self._urgent or self._normal or self._closed):
                    self._ready.wait()
                if self._urgent:
                    future, fn, args, kwargs = self._urgent.popleft()
                elif self._normal:
                    future, fn, args, kwargs = self._normal.popleft()
                else:
                    return  # closed, and nothing is left
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the waiter, as ThreadPoolExecutor does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """What was queued still runs (unless `cancel_futures`); nothing new is taken."""
        with self._ready:
            self._closed = True
            if cancel_futures:
                for lane in (self._urgent, self._normal):
                    while lane:
                        lane.popleft()[0].cancel()
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()
