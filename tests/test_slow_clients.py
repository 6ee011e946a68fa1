"""Slow and abusive clients (issue 13, item 6) against a real `hookcast serve`: connections
that send their headers a byte at a time, a body that never ends, or nothing at all are cut
at the deadline while normal requests keep working; beyond the connection cap a new
connection gets a 503 at once and the log says so once."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from support.databases import migrated_database_url
from support.processes import HOST, HookcastProcess, create_key, tail

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling"),
]

SLOW = 200  # slow connections at once (loopback only)
DEADLINE = 1.0  # HOOKCAST_HEADER_TIMEOUT and HOOKCAST_BODY_TIMEOUT in these tests
GIVE_UP = 15.0  # a slow connection still open this long was not cut


def _serve(
    tmp_path: Path, processes: dict[str, HookcastProcess], **env: str
) -> tuple[HookcastProcess, str]:
    url = migrated_database_url(tmp_path)
    key = create_key(url, tmp_path, "Cust1234", "slow")
    serve = HookcastProcess.serve(
        tmp_path,
        {
            **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
            "HOOKCAST_DATABASE_URL": url,
            **env,
        },
        "serve",
    )
    processes[serve.name] = serve
    serve.wait_ready(key, 30)
    return serve, key


async def _slow_client(port: int, kind: str) -> tuple[float, bytes]:
    """Open a connection and dribble a request (`headers`: the header block a byte at a
    time; `body`: whole headers, then a body a byte at a time; `silent`: nothing) until the
    server closes it: (seconds it stayed open, what the server answered)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    if kind == "headers":
        dribble = b"GET /api/v1/Webhook HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
    elif kind == "body":
        writer.write(
            b"POST /api/v1/Webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        dribble = b" " * 100_000
    else:
        dribble = b""
    answer = b""
    try:
        for i in range(100_000):
            if time.monotonic() - started > GIVE_UP:
                break
            if dribble:
                writer.write(dribble[i : i + 1])
                await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(1024), 0.2)
            except TimeoutError:
                continue
            answer += chunk
            if not chunk:  # closed by the server
                break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def _normal_requests(url: str, key: str, until: Callable[[], bool]) -> tuple[int, list[str]]:
    """GET /api/v1/Webhook over and over until `until()`: (answered 200, failures)."""
    ok, failed = 0, []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        timeout=timeout, headers={"Authorization": f"Bearer {key}"}
    ) as session:
        while not until():
            try:
                async with session.get(f"{url}/api/v1/Webhook") as response:
                    await response.read()
                    if response.status == 200:
                        ok += 1
                    else:
                        failed.append(str(response.status))
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed.append(repr(exc))
            await asyncio.sleep(0.05)
    return ok, failed


def test_slow_clients_are_cut_at_the_deadline_while_normal_requests_work(
    tmp_path: Path,
    processes: dict[str, HookcastProcess],
    record_property: Callable[[str, object], None],
) -> None:
    serve, key = _serve(
        tmp_path,
        processes,
        HOOKCAST_HEADER_TIMEOUT=str(DEADLINE),
        HOOKCAST_BODY_TIMEOUT=str(DEADLINE),
    )
    assert serve.port is not None
    kinds = ["headers", "body", "silent"]

    async def scenario() -> tuple[list[tuple[float, bytes]], tuple[int, list[str]]]:
        slow = asyncio.gather(*(_slow_client(serve.port, kinds[i % 3]) for i in range(SLOW)))
        normal = asyncio.create_task(_normal_requests(serve.url, key, slow.done))
        return await slow, await normal

    results, (ok, failed) = asyncio.run(scenario())
    lifetimes = [seconds for seconds, _ in results]
    record_property("slow_connection_seconds_median", round(statistics.median(lifetimes), 2))
    record_property("slow_connection_seconds_max", round(max(lifetimes), 2))
    record_property("normal_requests_ok", ok)
    not_cut = sum(1 for seconds in lifetimes if seconds >= GIVE_UP)
    assert not_cut == 0, f"{not_cut} of {SLOW} slow connections were never closed"
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in results), {
        answer[:40] for _, answer in results
    }
    # Served while the slow connections were open (how many depends on the machine's load).
    assert not failed and ok >= 1, (ok, failed[:5], tail(serve.log))
    serve.check_alive()


def test_connections_beyond_the_cap_get_503_and_one_log_line(
    tmp_path: Path, processes: dict[str, HookcastProcess]
) -> None:
    cap = 20
    serve, key = _serve(
        tmp_path, processes, HOOKCAST_MAX_CONNECTIONS=str(cap), HOOKCAST_HEADER_TIMEOUT="60"
    )
    assert serve.port is not None

    async def scenario() -> list[bytes]:
        connections = [await asyncio.open_connection(HOST, serve.port) for _ in range(cap + 5)]

        async def answer(reader: asyncio.StreamReader) -> bytes:
            try:
                return await asyncio.wait_for(reader.read(1024), 1.0)
            except TimeoutError:
                return b""  # admitted: waiting for a request

        answers = await asyncio.gather(*(answer(reader) for reader, _ in connections))
        for _, writer in connections:
            writer.close()
        return answers

    answers = asyncio.run(scenario())
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(refused) == 5 and answers.count(b"") == cap, answers

    # Once they are closed, requests are served again.
    async def normal() -> tuple[int, list[str]]:
        deadline = time.monotonic() + 1.0
        return await _normal_requests(serve.url, key, lambda: time.monotonic() > deadline)

    ok, failed = asyncio.run(normal())
    assert ok and not failed, failed
    log = serve.log.read_text(errors="replace")
    assert log.count(f"open connections reached the cap of {cap}") == 1, tail(serve.log)
