"""Per-run state: output buffer, variables, counters and limit checks."""

from __future__ import annotations

import time
from collections.abc import Collection

from .errors import LimitExceeded
from .limits import Limits
from .transport import HttpTransport

CHECK_EVERY = 200  # statements between wall-clock checks


class Context:
    __slots__ = (
        "allow_hosts",
        "check_at",
        "deadline",
        "depth",
        "exit_message",
        "http",
        "http_count",
        "limits",
        "logs",
        "max_array",
        "max_depth",
        "max_output",
        "max_steps",
        "max_string",
        "mem",
        "out",
        "out_len",
        "slept",
        "steps",
        "vars",
    )

    def __init__(
        self,
        limits: Limits,
        variables: dict[str, str] | None = None,
        http: HttpTransport | None = None,
        allow_hosts: Collection[str] = (),
    ) -> None:
        self.limits = limits
        self.steps = 0
        self.max_steps = limits.max_steps
        self.check_at = min(CHECK_EVERY, limits.max_steps)
        self.deadline = time.perf_counter() + limits.max_seconds
        self.slept = 0.0
        self.out: list[str] = []
        self.out_len = 0
        self.max_output = limits.max_output
        self.max_string = limits.max_string
        self.max_array = limits.max_array
        self.max_depth = limits.max_call_depth
        self.depth = 0
        self.mem = 0
        self.vars: dict[str, str] = (
            {str(k): v if type(v) is str else str(v) for k, v in variables.items()}
            if variables
            else {}
        )
        self.http = http
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)
        self.http_count = 0
        self.logs: list[str] = []
        self.exit_message: str | None = None

    # ---- limits
    def check(self) -> None:
        """Called when `steps` passes `check_at`."""
        if self.steps > self.max_steps:
            raise LimitExceeded(f"more than {self.max_steps} statements executed")
        self.check_time()
        self.check_at = min(self.steps + CHECK_EVERY, self.max_steps)

    def check_time(self) -> None:
        if time.perf_counter() + self.slept > self.deadline:
            raise LimitExceeded(f"run took longer than {self.limits.max_seconds:g} seconds")

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept += seconds
        self.check_time()

    def string_too_long(self, n: int) -> LimitExceeded:
        return LimitExceeded(f"string of {n} characters exceeds the limit of {self.max_string}")

    def check_length(self, n: int) -> None:
        """Before building a string of `n` characters: refuse it if it would be too long."""
        if n > self.max_string:
            raise self.string_too_long(n)

    def check_string(self, s: str) -> str:
        if len(s) > self.max_string:
            raise self.string_too_long(len(s))
        return s

    def check_array(self, n: int) -> None:
        if n > self.max_array:
            raise LimitExceeded(f"array of {n} elements exceeds the limit of {self.max_array}")

    def store(self, v: object) -> None:
        """Account a value stored into a container (memory budget)."""
        n = len(v) if type(v) is str else 1
        self.mem += n
        if self.mem > self.limits.max_memory:
            raise LimitExceeded("memory budget of the run exceeded")

    # ---- output
    def write(self, s: str) -> None:
        n = self.out_len + len(s)
        if n > self.max_output:
            room = self.max_output - self.out_len
            if room > 0:
                self.out.append(s[:room])
                self.out_len += room
            raise LimitExceeded(f"output exceeds {self.max_output} characters")
        self.out.append(s)
        self.out_len = n

    def log(self, s: str) -> None:
        if len(self.logs) < 1000:
            self.logs.append(s[:10000])
