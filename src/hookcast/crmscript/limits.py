"""Sandbox limits of spec §14 (host-configurable)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Per-run sandbox limits. Exceeding any of them fails the run with LimitExceeded,
    which a script cannot catch."""

    max_steps: int = 1_000_000  # executed statements (loop iterations and calls count too)
    max_call_depth: int = 256  # nested user function/method calls
    max_output: int = 1 << 20  # characters of print/printLine output
    max_seconds: float = 10.0  # wall time of one run (sleep() counts)
    max_string: int = 10_000_000  # characters per String (and bytes per Byte[])
    max_array: int = 1_000_000  # elements per array, Vector or Map
    max_include_depth: int = 16  # nested #include chain
    max_http_requests: int = 20  # requests per run
    http_timeout: float = 10.0  # seconds per request (upper bound of the "timeout" option)
    max_http_response: int = 5 << 20  # bytes per response body
    max_memory: int = (
        200_000_000  # (ours) budget of characters/elements stored into containers per run
    )
    max_nesting: int = 200  # (ours) syntactic nesting depth of blocks and expressions
