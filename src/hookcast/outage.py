"""Quiet outages (issue 13): when something hookcast depends on stops answering, the log gets
one line when the outage starts, at most one summary a `summary_every` while it lasts and
one line when it ends, never a line (or a traceback) per attempt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    """Tells `logger` about the outages of `what` (e.g. "the SMTP server mail:25") from the
    attempts' outcomes: `failed(reason)` after each failed one, `ok()` after each one that
    reached it."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        summary_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._every = summary_every
        self._clock = clock
        self._since: float | None = None  # the outage's first failure, None while all is well
        self._failures = 0  # in this outage
        self._told_at = 0.0  # the last line about it
        self._told_failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, reason: str) -> None:
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since = self._told_at = now
            self._told_failures = 1
            self._log.warning("%s is unavailable: %s", self._what, reason)
        elif now - self._told_at >= self._every:
            self._log.warning(
                "%s is still unavailable after %.0f s (%d failed tries, %d since the last "
                "report); the last: %s",
                self._what,
                now - self._since,
                self._failures,
                self._failures - self._told_failures,
                reason,
            )
            self._told_at, self._told_failures = now, self._failures

    def ok(self) -> None:
        if self._since is None:
            return
        self._log.warning(
            "%s is available again after %.0f s (%d failed tries)",
            self._what,
            self._clock() - self._since,
            self._failures,
        )
        self._since, self._failures = None, 0
