"""Quiet outages: while a service hookcast depends on is down, every loop that uses it
fails again and again (claims, outcome writes, heartbeats, API requests). One line when the
outage starts, a summary at most once a `summary_every` while it lasts, one line when it
ends; never a traceback per attempt.

`Outage` is the policy, a pure state machine over the times it is given; `OutageReporter`
adds the clock, a lock (failures arrive from the database threads) and the logger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Outage", "OutageReporter", "duration"]


def duration(seconds: float) -> str:
    """2m10s, 15s, 1h02m."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Outage:
    """ok → failing (start line) → summaries → ok (end line). Each method returns the line to
    log, or None. A success within `settle` seconds of the start does not end the outage: as
    a server goes down, work already under way on a connection it has not closed yet still
    succeeds, and that is not the outage ending."""

    what: str
    summary_every: float = 60.0
    settle: float = 1.0
    since: float | None = None  # when the outage began; None: no outage
    failures: int = 0  # operations failed since then
    summarized_at: float = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, now: float, error: str) -> str | None:
        self.failures += 1
        if self.since is None:
            self.since = self.summarized_at = now
            return (
                f"{self.what} unavailable: {error}; retrying quietly, "
                f"a summary at most every {duration(self.summary_every)}"
            )
        if now - self.summarized_at >= self.summary_every:
            self.summarized_at = now
            return (
                f"{self.what} unavailable for {duration(now - self.since)}, "
                f"{self.failures} operations failed; last error: {error}"
            )
        return None

    def succeeded(self, now: float) -> str | None:
        if self.since is None or now - self.since < self.settle:
            return None
        line = (
            f"{self.what} available again after {duration(now - self.since)}; "
            f"{self.failures} operations failed meanwhile"
        )
        self.since, self.failures = None, 0
        return line


class OutageReporter:
    """Logs an `Outage` of `what` (e.g. "database"): failures at WARNING, the end at INFO."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        *,
        summary_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outage = Outage(what, summary_every)
        self._log = logger
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        return self._outage.failing

    def failed(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else _first_line(error)
        with self._lock:
            line = self._outage.failed(self._clock(), text)
        if line is not None:
            self._log.warning("%s", line)

    def succeeded(self) -> None:
        if not self._outage.failing:  # the hot path: no lock while all is well
            return
        with self._lock:
            line = self._outage.succeeded(self._clock())
        if line is not None:
            self._log.info("%s", line)


def _first_line(error: BaseException) -> str:
    # A driver's error under SQLAlchemy's wrapper: its own text, without the statement.
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")
