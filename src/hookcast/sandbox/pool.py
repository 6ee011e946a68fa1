"""The pool of sandbox worker processes and the parent's side of the protocol.

Workers start on first use (so `hookcast serve` starts quickly) and are reused. A request
waits in the fair queue (fair.py) for a slot, takes an idle worker (or starts one), and gets
`deadline` seconds of wall-clock time for the whole exchange. When a worker overruns, dies
(CPU limit, memory, crash) or its caller is cancelled, the parent kills it, whatever it is
doing, and a replacement is started in the background while the slot stays held, so the
number of worker processes never exceeds the pool size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from .fair import FairQueue
from .protocol import HEADER, Message, decode, encode, frame_length

log = logging.getLogger("hookcast.sandbox")

HttpHandler = Callable[[Message], Awaitable[Message]]
START_TIMEOUT = 30.0  # seconds for a new worker to say it is ready


@dataclass(frozen=True)
class SandboxConfig:
    workers: int = 2  # worker processes
    per_tenant: int | None = None  # workers one tenant may hold at once; None: workers - 1
    memory_bytes: int = 512 << 20  # RLIMIT_AS of each worker; 0: none
    cache_bytes: int = 64 << 20  # each worker's compiled-code cache

    @property
    def tenant_cap(self) -> int:
        if self.per_tenant is not None:
            return max(1, min(self.per_tenant, self.workers))
        return max(1, self.workers - 1)


class SandboxTimeout(Exception):
    """The worker overran its deadline and was killed."""


class SandboxCrashed(Exception):
    """The worker ended without answering (CPU limit, out of memory, killed, crashed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, message: Message) -> None:
        self.stdin.write(encode(message))
        await self.stdin.drain()

    async def receive(self) -> Message:
        header = await self.stdout.readexactly(HEADER.size)
        body = await self.stdout.readexactly(frame_length(header))
        return decode(body)

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        # Its transport is released once every pipe is closed (not when the loop is gone).
        self.stdin.close()

    async def ended(self) -> str:
        """Why the worker stopped (waits for it to be reaped)."""
        code = await self.proc.wait()
        if code == -signal.SIGXCPU:
            return "it used up its CPU time"
        if code == -signal.SIGKILL:
            return "it was killed (out of memory?)"
        if code < 0:
            return f"it was ended by signal {signal.Signals(-code).name}"
        return f"it exited with status {code}"


def _worker_env() -> dict[str, str]:
    # The worker imports hookcast from where this process found it.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class SandboxPool:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._queue: FairQueue[asyncio.Future[None]] = FairQueue(
            self.config.workers, self.config.tenant_cap
        )
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.started = 0  # worker processes started so far (tests, metrics)

    # ----- public -----------------------------------------------------------------------------

    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._live if w.proc.returncode is None)

    async def call(
        self,
        tenant: str,
        request: Message,
        *,
        deadline: float,
        on_http: HttpHandler | None = None,
    ) -> Message:
        """Send one request to a worker and return its answer. Raises SandboxTimeout when
        the answer takes longer than `deadline` seconds (the worker is killed) and
        SandboxCrashed when the worker ends without answering."""
        if self._closed:
            raise SandboxCrashed("the sandbox is shut down")
        await self._acquire(tenant)
        replacing = False
        try:
            worker = self._idle.pop() if self._idle else await self._start()
            try:
                async with asyncio.timeout(deadline):
                    answer = await self._exchange(worker, request, on_http)
            except TimeoutError:
                self._retire(worker)
                replacing = self._replace(tenant)
                raise SandboxTimeout() from None
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                self._retire(worker)
                replacing = self._replace(tenant)
                raise SandboxCrashed(await worker.ended()) from None
            except BaseException:  # cancelled mid-run: its state is unknown
                self._retire(worker)
                raise
            if answer.get("recycle"):
                self._retire(worker)
                replacing = self._replace(tenant)
            else:
                self._idle.append(worker)
            return answer
        finally:
            if not replacing:
                self._release(tenant)

    def close(self) -> None:
        """Kill every worker now (the event loop reaps them); queued callers fail."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for worker in list(self._live):
            worker.kill()
        self._idle.clear()

    async def aclose(self) -> None:
        """Kill every worker and wait until each has ended."""
        self.close()
        live = list(self._live)
        self._live.clear()
        for worker in live:
            with contextlib.suppress(Exception):
                await worker.proc.wait()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----- scheduling -------------------------------------------------------------------------

    async def _acquire(self, tenant: str) -> None:
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.push(tenant, ticket)
        self._pump()
        try:
            await ticket
        except BaseException:
            if not self._queue.remove(tenant, ticket) and ticket.done() and not ticket.cancelled():
                self._release(tenant)  # the slot was granted as we gave up
            raise

    def _release(self, tenant: str) -> None:
        self._queue.done(tenant)
        self._pump()

    def _pump(self) -> None:
        while (granted := self._queue.pop()) is not None:
            tenant, ticket = granted
            if ticket.done():  # its caller was cancelled: the slot is free again
                self._queue.done(tenant)
            else:
                ticket.set_result(None)

    # ----- workers ----------------------------------------------------------------------------

    async def _start(self) -> _Worker:
        if self._closed:
            raise SandboxCrashed("the sandbox is shut down")
        config = orjson.dumps(
            {"memory_bytes": self.config.memory_bytes, "cache_bytes": self.config.cache_bytes}
        ).decode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hookcast.sandbox.worker",
            config,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=_worker_env(),
        )
        worker = _Worker(proc)
        self._live.add(worker)
        self.started += 1
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await worker.receive()
            if ready.get("op") != "ready":
                raise ValueError(f"unexpected first frame {ready!r}")
        except BaseException:
            self._retire(worker)
            raise
        if self._closed:
            self._retire(worker)
            raise SandboxCrashed("the sandbox is shut down")
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._live.discard(worker)
        # Reap it in the background so no zombie is left.
        self._background(worker.proc.wait())

    def _replace(self, tenant: str) -> bool:
        """Start a worker in place of a killed one; the caller's slot is released once it is
        ready (or failed). True: the slot is now the replacement's to release."""
        if self._closed:
            return False

        async def replace() -> None:
            try:
                self._idle.append(await self._start())
            except Exception as exc:  # the next caller will try again
                log.warning("could not start a sandbox worker: %s", exc)
            finally:
                self._release(tenant)

        self._background(replace())
        return True

    def _background(self, aw: Awaitable[object]) -> None:
        async def wrapped() -> None:
            with contextlib.suppress(Exception):
                await aw

        task = asyncio.get_running_loop().create_task(wrapped())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _exchange(worker: _Worker, request: Message, on_http: HttpHandler | None) -> Message:
        await worker.send(request)
        while True:
            message = await worker.receive()
            if message.get("op") != "http":
                return message
            if on_http is None:
                reply: Message = {"op": "http_result", "error": "HTTP is not available here"}
            else:
                reply = await on_http(message)
            await worker.send(reply)
