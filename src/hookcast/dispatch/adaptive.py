"""Per-endpoint adaptive concurrency (AIMD), the way TCP and Netflix's concurrency-limits
size a window: how many attempts one receiver may have in flight.

An endpoint starts with `initial`. Each success adds one while it has never failed (slow
start), and 1/limit after that (additive increase: about one per round trip at the
limit). A timeout or a failed connection means the endpoint is unhealthy: the limit drops
to a single probe, whose answer decides for the deliveries held behind it instead of each
of them burning a timeout. Any other failure (the receiver answered, but not 2xx) halves
the limit. The limit never leaves [1, `ceiling`].

Pure: no clock, no I/O; the dispatcher reports outcomes and asks for limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..outcome import AttemptOutcome, ErrorKind

# Failures that say nothing answered: the endpoint is unhealthy, probe it with one attempt.
UNHEALTHY = frozenset({ErrorKind.TIMEOUT, ErrorKind.NETWORK})


@dataclass(slots=True)
class _Window:
    limit: float
    slow_start: bool = True


class AdaptiveLimits:
    """The in-flight limit of every endpoint this dispatcher has talked to."""

    def __init__(self, *, initial: int, ceiling: int, remembered: int = 10_000) -> None:
        if not 1 <= initial <= ceiling:
            raise ValueError("need 1 <= initial <= ceiling")
        self.initial = initial
        self.ceiling = ceiling
        self._remembered = remembered
        self._windows: dict[str, _Window] = {}

    def limit(self, endpoint: str) -> int:
        window = self._windows.get(endpoint)
        return self.initial if window is None else int(window.limit)

    def healthy(self, endpoint: str) -> bool:
        """False while the endpoint is down to its probe after a timeout or network error."""
        window = self._windows.get(endpoint)
        return window is None or window.limit > 1 or window.slow_start

    def record(self, endpoint: str, outcome: AttemptOutcome) -> None:
        window = self._windows.get(endpoint)
        if window is None:
            if len(self._windows) >= self._remembered:  # forget the oldest endpoint
                del self._windows[next(iter(self._windows))]
            window = self._windows[endpoint] = _Window(float(self.initial))
        if outcome.ok:
            step = 1.0 if window.slow_start else 1.0 / window.limit
            window.limit = min(float(self.ceiling), window.limit + step)
        elif outcome.kind in UNHEALTHY:
            window.limit, window.slow_start = 1.0, False
        else:
            window.limit, window.slow_start = max(1.0, window.limit / 2), False
