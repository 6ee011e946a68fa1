"""Real `python -m hookcast ...` processes for the tests that kill and restart them (crash,
scale-out), and what those tests do with them: create a key over the CLI, signal events over
REST, read what the receiver got."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import httpx

from support.receivers import Receiver, RecordedRequest

HOST = "127.0.0.1"
# How long to wait for a process that has been sent SIGKILL: it is gone at once, this only
# keeps a hang from blocking the test run.
KILL_WAIT = 10


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tail(log: Path, lines: int = 40) -> str:
    """The end of a process's log, for failure messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class HookcastProcess:
    """One `python -m hookcast ...` process, its output in a log file (a pipe nobody reads
    could fill up and block it). `serve` builds a `hookcast serve` on a free port."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        name: str,
        args: list[str],
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log = workdir / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookcast", *args],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    @classmethod
    def serve(cls, workdir: Path, env: dict[str, str], name: str) -> HookcastProcess:
        """`hookcast serve` on 127.0.0.1 and a free port (see `url`)."""
        port = free_port()
        return cls(workdir, env, name, ["serve", "--host", HOST, "--port", str(port)], port=port)

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} is not a serve process: it has no URL"
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code}:\n{tail(self.log)}")

    def wait_ready(self, key: str, deadline: float) -> None:
        """Poll GET /api/v1/Webhook with `key` until the serve answers 200; fail if it
        exits, answers anything else, or does not answer within `deadline` seconds."""
        end = time.monotonic() + deadline
        while True:
            self.check_alive()
            try:
                response = httpx.get(
                    f"{self.url}/api/v1/Webhook",
                    timeout=2,
                    headers={"Authorization": f"Bearer {key}"},
                )
            except httpx.TransportError:
                response = None
            if response is not None:
                assert response.status_code == 200, response.text
                return
            if time.monotonic() > end:
                raise AssertionError(
                    f"{self.name} did not answer within {deadline} s:\n{tail(self.log)}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash or the OOM killer."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=KILL_WAIT)
        self._log_file.close()

    async def stop(self, sig: signal.Signals, deadline: float) -> tuple[int, float]:
        """Send `sig` and wait for the exit: (exit code, seconds it took). Raises if the
        process is still running after `deadline` seconds."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        while (code := self.proc.poll()) is None:
            if time.monotonic() - started > deadline:
                raise AssertionError(
                    f"{self.name} still running {deadline} s after {sig.name}:\n{tail(self.log)}"
                )
            await asyncio.sleep(0.02)
        return code, time.monotonic() - started

    def stop_or_kill(self, sig: signal.Signals, deadline: float) -> None:
        """Send `sig` (a graceful stop), SIGKILL if that does not end it within `deadline`
        seconds; the caller asserts on `proc.returncode`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=deadline)
        self._log_file.close()

    def close(self) -> None:
        """Cleanup after the test: kill it if it still runs, close the log."""
        with contextlib.suppress(Exception):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=KILL_WAIT)
        with contextlib.suppress(Exception):
            self._log_file.close()


def run_cli(args: list[str], workdir: Path) -> str:
    """`python -m hookcast ARGS`, which must succeed: its stdout. COLUMNS is wide so that
    tables (`hookcast workers`) are not wrapped."""
    result = subprocess.run(
        [sys.executable, "-m", "hookcast", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def create_key(db_url: str, workdir: Path, tenant: str, name: str) -> str:
    """A new API key for `tenant` (associate 5), over the CLI (after `hookcast migrate`: only
    serve, worker and migrate create a database)."""
    run_cli(["migrate", "--db", db_url], workdir)
    output = run_cli(
        [
            "keys",
            "create",
            "--tenant",
            tenant,
            "--associate-id",
            "5",
            "--name",
            name,
            "--db",
            db_url,
        ],
        workdir,
    )
    key = output.strip().splitlines()[-1]  # the key is printed alone on the last line
    assert key.startswith("hc_"), output
    return key


def api_session(key: str, limit: int) -> aiohttp.ClientSession:
    """A session with the API key, at most `limit` connections and a 30 s timeout."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=30),
        headers={"Authorization": f"Bearer {key}"},
    )


async def signal_all(
    session: aiohttp.ClientSession,
    base_url: str,
    event: str,
    count: int,
    concurrency: int,
    deadline: float,
) -> dict[int, int | str]:
    """POST /Webhook/{event}/{pk} for pk 1..count, `concurrency` at a time: pk -> HTTP
    status, or the error when the request itself failed. Fails after `deadline` seconds.

    aiohttp (a hookcast dependency) rather than httpx.AsyncClient: at this concurrency
    httpx's connection pool is the bottleneck (1,000 signals took 3-16 s, varying from run
    to run, against about 1 s with aiohttp), and a slow, erratic signalling phase would let
    a slow receiver finish everything before the kill."""
    statuses: dict[int, int | str] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(pk: int) -> None:
        async with gate:
            try:
                async with session.post(
                    f"{base_url}/api/v1/Webhook/{event}/{pk}", json={"name": f"contact {pk}"}
                ) as response:
                    await response.read()
                    statuses[pk] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[pk] = repr(exc)

    await asyncio.wait_for(asyncio.gather(*(one(pk) for pk in range(1, count + 1))), deadline)
    return statuses


def deliveries(receiver: Receiver) -> list[RecordedRequest]:
    """What the receiver got, without the registration's test POST."""
    return [r for r in receiver.requests if r.header("X-Hook-Test") != "true"]


def primary_key(request: RecordedRequest) -> int:
    """The PrimaryKey of the event a delivery carries."""
    return int(json.loads(request.body)["PrimaryKey"])


def check_each_delivered(
    delivered: list[RecordedRequest], accepted: set[int]
) -> dict[int, set[str | None]]:
    """Assert that every accepted event reached the receiver and that each delivery kept one
    webhook-id across its copies: PrimaryKey -> the webhook-ids seen (one each)."""
    missing = accepted - {primary_key(r) for r in delivered}
    assert not missing, f"{len(missing)} accepted events never delivered: {sorted(missing)[:10]}"

    # webhook-id names one delivery (this event to this webhook) across every attempt.
    ids_by_pk: dict[int, set[str | None]] = defaultdict(set)
    for r in delivered:
        ids_by_pk[primary_key(r)].add(r.header("webhook-id"))
    assert all(len(ids) == 1 and None not in ids for ids in ids_by_pk.values()), (
        "webhook-id missing or not stable for one delivery"
    )
    return ids_by_pk
