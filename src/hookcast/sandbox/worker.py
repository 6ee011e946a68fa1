"""A sandbox worker process: `python -m hookcast.sandbox.worker '<config JSON>'`.

It limits its own address space (RLIMIT_AS) once, then serves frames from the parent on
stdin/stdout one at a time: `check` (compile errors of a text) and `run` (compile, cached,
and run). Before each it sets its CPU-time soft limit (RLIMIT_CPU) to what it has used plus
the run's allowance, so a run that spins in C code is ended by the kernel (SIGXCPU) even if
the parent's wall-clock kill came late. A script's HTTP requests are sent to the parent as
`http` frames and wait for its `http_result`: the parent's sender, target guard and TLS
rules serve them. The worker dies with its parent (PR_SET_PDEATHSIG) and at the end of
stdin.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import Any, BinaryIO

import orjson

from ..crmscript import HttpResponse, HttpTransportError, check, run_script
from ..crmscript.errors import LimitExceeded
from ..crmscript.interpreter import set_cache_budget
from .protocol import (
    Message,
    b64,
    diagnostics_to_list,
    limits_from_dict,
    read_frame,
    result_to_dict,
    unb64,
    write_frame,
)

_PR_SET_PDEATHSIG = 1


class PipeTransport:
    """The interpreter's HttpTransport: each request is made by the parent."""

    def __init__(self, inp: BinaryIO, out: BinaryIO) -> None:
        self._inp = inp
        self._out = out

    def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        timeout: float,
        max_bytes: int,
    ) -> HttpResponse:
        write_frame(
            self._out,
            {
                "op": "http",
                "method": method,
                "url": url,
                "headers": [list(h) for h in headers],
                "body": b64(body),
                "timeout": timeout,
                "max_bytes": max_bytes,
            },
        )
        reply = read_frame(self._inp)
        if reply is None:  # the parent is gone
            os._exit(0)
        if reply.get("error") is not None:
            raise HttpTransportError(str(reply["error"]))
        return HttpResponse(
            int(reply["status"]),
            [(str(k), str(v)) for k, v in reply["headers"]],
            unb64(reply["body"]) or b"",
        )


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: stdin's end still stops the worker
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _limit_memory(max_bytes: int) -> None:
    if max_bytes > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            max_bytes = min(max_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, hard))


def _allow_cpu(seconds: float) -> None:
    """Let the next request use `seconds` more CPU time (rounded up to whole seconds)."""
    if seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


_running = False  # a script or a check is running (SIGXCPU may end it)


def _cpu_used_up(signum: int, frame: object) -> None:
    # The kernel's SIGXCPU at the run's soft CPU limit: end the run as a LimitExceeded the
    # interpreter reports (with the output so far); the worker lives on. Script code stuck
    # in C never gets here: the parent's wall-clock deadline kills the worker then.
    if _running:
        raise LimitExceeded("the run used up its CPU time")


def _serve(request: Message, inp: BinaryIO, out: BinaryIO) -> Message:
    global _running
    _running = True
    try:
        return _serve_one(request, inp, out)
    finally:
        _running = False


def _serve_one(request: Message, inp: BinaryIO, out: BinaryIO) -> Message:
    limits = limits_from_dict(request.get("limits") or {})
    includes: dict[str, str] = dict(request.get("includes") or {})
    name = str(request.get("name") or "main")
    _allow_cpu(float(request.get("cpu_seconds") or 0))
    if request["op"] == "check":
        found = check(request["source"], include=includes.get, limits=limits, name=name)
        return {"op": "diagnostics", "items": diagnostics_to_list(found)}
    if request["op"] == "run":
        http = PipeTransport(inp, out) if request.get("http") else None
        result = run_script(
            request["source"],
            variables=dict(request.get("variables") or {}),
            include=includes.get,
            limits=limits,
            http=http,
            http_allow_hosts=tuple(request.get("allow_hosts") or ()),
            name=name,
        )
        # After a MemoryError the heap may be fragmented or half-built: start afresh.
        recycle = result.error_kind == "LimitExceeded" and result.error_message == "out of memory"
        return {"op": "result", "result": result_to_dict(result), "recycle": recycle}
    return {"op": "error", "message": f"unknown op {request['op']!r}"}


def main(argv: list[str] | None = None) -> None:
    config: dict[str, Any] = (
        orjson.loads((argv or sys.argv)[1]) if len(argv or sys.argv) > 1 else {}
    )
    # The protocol keeps private copies of stdin/stdout; anything else printed goes to stderr.
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _die_with_parent()
    set_cache_budget(int(config.get("cache_bytes", 64 << 20)))
    _limit_memory(int(config.get("memory_bytes", 0)))
    signal.signal(signal.SIGXCPU, _cpu_used_up)
    write_frame(out, {"op": "ready", "pid": os.getpid()})
    while True:
        request = read_frame(inp)
        if request is None:
            return
        try:
            reply = _serve(request, inp, out)
        except MemoryError:
            reply = {"op": "error", "message": "out of memory", "recycle": True}
        write_frame(out, reply)
        if reply.get("recycle"):
            return


if __name__ == "__main__":
    main()
