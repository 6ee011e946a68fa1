"""Scale-out on the real PostgreSQL (issue 5): one `hookcast serve` and three `hookcast worker`
processes share one database and deliver 5,000 events to a loopback HTTPS receiver.

In the middle of the run one worker is killed with SIGKILL; later a second worker gets
SIGTERM while it has attempts in flight. Every event must reach the receiver at least once,
the gracefully stopped worker must exit 0 in time without leaving anything behind, and the
duplicates must all go back to the killed worker: no live process ever sends one delivery
twice, and the killed worker causes no more duplicates than it had sent without recording
the outcome (measured at the kill, and bounded by its settings). `/health` and `hookcast
workers` must show every dispatcher with its pid and last heartbeat.

Each process sends its own User-Agent (HOOKCAST_USER_AGENT), so every request the receiver
saw is attributed exactly to the process that sent it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import trustme
from aiohttp import web
from support.databases import needs_postgres, new_postgres_url
from support.processes import (
    HookcastProcess,
    api_session,
    check_each_delivered,
    create_key,
    deliveries,
    primary_key,
    run_cli,
    signal_all,
    tail,
)
from support.receivers import Receiver, RecordedRequest

pytestmark = [
    pytest.mark.slow,  # 5,000 events through four real processes
    needs_postgres,
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL and POSIX signals"),
]

EVENTS = 5000
EVENT = "contact.changed"
TENANT = "Cust1234"
SIGNAL_CONCURRENCY = 16

SERVE, VICTIM, GRACEFUL, SURVIVOR = "serve", "worker-1", "worker-2", "worker-3"
WORKERS = (VICTIM, GRACEFUL, SURVIVOR)
AGENTS = {name: f"hookcast-scale/{name}" for name in (SERVE, *WORKERS)}
SENDER_OF_AGENT = {agent: name for name, agent in AGENTS.items()}

# Every dispatcher (the serve's too) runs CONCURRENCY attempts and writes outcomes in batches
# of BATCH_SIZE. The per-webhook cap and the connection pool are raised to CONCURRENCY: there
# is one webhook, and their defaults would otherwise be the real limit.
CONCURRENCY = 16
BATCH_SIZE = 16
# The receiver answers this slowly, so every dispatcher has its slots full whenever there is
# work: 4 x 16 / 0.1 s = 640 deliveries a second at most. On 2 cores the signalling over REST
# (5,000 POSTs, 15-20 s) sets the pace, so the kill and the SIGTERM land while events still
# arrive; the whole test takes about 30 s there.
ANSWER_DELAY = 0.1
KILL_AFTER = 1500  # deliveries the receiver has seen when worker-1 gets SIGKILL
TERM_AFTER = 3000  # distinct events delivered when worker-2 gets SIGTERM
LEASE = 2.0  # a killed worker's claims come back after 2 s
ATTEMPT_TIMEOUT = 5.0

# Deadlines (seconds). Nothing sleeps for a fixed long time; everything polls.
START_DEADLINE = 30
RUN_DEADLINE = 120  # from the first signal to the last delivery recorded
SIGNAL_DEADLINE = 60
# SIGTERM: in-flight attempts may take up to the attempt timeout (+1 s, Dispatcher.stop),
# then the outcomes are written and the process exits.
STOP_DEADLINE = ATTEMPT_TIMEOUT + 10


class TrackingReceiver(Receiver):
    """A Receiver that also knows which requests it has not answered yet: (User-Agent,
    webhook-id) of every request between its arrival and the handler's return."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        super().__init__(cert)
        self._open: Counter[tuple[str, str]] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        key = (request.headers.get("User-Agent", ""), request.headers.get("webhook-id", ""))
        with self._lock:
            self._open[key] += 1
        try:
            return await super()._handle(request)
        finally:
            with self._lock:
                self._open[key] -= 1
                if not self._open[key]:
                    del self._open[key]

    def unanswered(self, agent: str) -> set[str]:
        """webhook-ids of the requests from `agent` that are in the receiver's hands now."""
        with self._lock:
            return {wid for (ua, wid), n in self._open.items() if ua == agent and n}


@pytest.fixture
def tracking_receiver(tls_ca: trustme.CA) -> Iterator[TrackingReceiver]:
    receiver = TrackingReceiver(tls_ca.issue_cert("127.0.0.1", "localhost")).start()
    yield receiver
    receiver.stop()


def _sender(request: RecordedRequest) -> str:
    return SENDER_OF_AGENT[request.header("User-Agent") or ""]


STATUS_QUERY = (
    "SELECT e.primary_key, d.status FROM deliveries d"
    " JOIN events e ON e.id = d.event_id WHERE e.name = %s"
)


def _statuses(conn: psycopg.Connection[Any]) -> dict[int, int]:
    """primary key -> delivery status (0 pending, 1 delivered, 2 given up), read now."""
    by_pk: dict[int, int] = {}
    for pk, status in conn.execute(STATUS_QUERY, (EVENT,)).fetchall():
        assert pk not in by_pk, f"two deliveries stored for PrimaryKey {pk}"
        by_pk[pk] = status
    return by_pk


async def _until(
    condition: Callable[[], bool | Awaitable[bool]],
    deadline: float,
    what: str,
    alive: list[HookcastProcess],
) -> None:
    """Poll `condition` until it holds; fail after `deadline` seconds or when a process that
    must keep running has exited."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        for process in alive:
            process.check_alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        await asyncio.sleep(0.05)


def _workers_table(table: str) -> dict[int, str]:
    """pid -> kind, from the table `hookcast workers` prints (id, kind, host, pid, ...)."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 8 and cells[3].isdigit():
            rows[int(cells[3])] = cells[1]
    return rows


async def _health(session: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with session.get(f"{base_url}/health") as response:
        assert response.status == 200, await response.text()
        return await response.json()


def test_serve_and_three_workers_survive_kill_9_and_sigterm(
    tmp_path: Path,
    tracking_receiver: TrackingReceiver,
    ca_bundle_path: str,
    processes: dict[str, HookcastProcess],
    record_property: Callable[[str, object], None],
) -> None:
    receiver = tracking_receiver
    receiver.respond(delay=ANSWER_DELAY)
    db_url = new_postgres_url()
    key = create_key(db_url, tmp_path, TENANT, "scale")

    base_env = {
        # Only this test's HOOKCAST_* settings: none inherited from the caller's environment.
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_LEASE": str(LEASE),
        "HOOKCAST_POLL_INTERVAL": "0.5",
        "HOOKCAST_RETRY_DELAYS": "0.1,0.2",
        "HOOKCAST_CYCLE_DELAY": "0.5",
        "HOOKCAST_ATTEMPT_TIMEOUT": str(ATTEMPT_TIMEOUT),
        "HOOKCAST_CONCURRENCY": str(CONCURRENCY),
        "HOOKCAST_PER_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "HOOKCAST_MAX_CONNECTIONS_PER_HOST": str(CONCURRENCY),
        "HOOKCAST_BATCH_SIZE": str(BATCH_SIZE),
    }
    processes[SERVE] = HookcastProcess.serve(
        tmp_path, {**base_env, "HOOKCAST_USER_AGENT": AGENTS[SERVE]}, SERVE
    )
    base_url = processes[SERVE].url
    for name in WORKERS:
        # --concurrency explicitly: the killed worker's is the first term of the bound below.
        processes[name] = HookcastProcess(
            tmp_path,
            {**base_env, "HOOKCAST_USER_AGENT": AGENTS[name]},
            name,
            ["worker", "--db", db_url, "--concurrency", str(CONCURRENCY)],
        )
    serve, victim, graceful, survivor = (processes[n] for n in (SERVE, *WORKERS))
    everyone = [serve, victim, graceful, survivor]

    run = asyncio.run(_scenario(base_url, key, db_url, receiver, processes, tmp_path))

    for process in everyone:
        assert "Traceback" not in process.log.read_text(errors="replace"), tail(process.log)

    # ---- what arrived ---------------------------------------------------------------------------
    delivered = deliveries(receiver)
    assert {r.header("User-Agent") for r in delivered} <= set(SENDER_OF_AGENT), (
        "a request from an unknown sender"
    )
    ids_by_pk = check_each_delivered(delivered, set(range(1, EVENTS + 1)))
    assert len({next(iter(ids)) for ids in ids_by_pk.values()}) == EVENTS, (
        "two events share a webhook-id"
    )

    # Every copy of every delivery, in the order the receiver saw them, by sender.
    copies: dict[str, list[str]] = defaultdict(list)
    pk_of: dict[str, int] = {}
    for r in delivered:
        wid = r.header("webhook-id") or ""
        copies[wid].append(_sender(r))
        pk_of[wid] = primary_key(r)
    per_sender = Counter(_sender(r) for r in delivered)
    duplicated = {wid: senders for wid, senders in copies.items() if len(senders) > 1}
    duplicates = sum(len(senders) - 1 for senders in duplicated.values())
    first_senders = Counter(senders[0] for senders in duplicated.values())
    victim_sent = {wid for wid, senders in copies.items() if VICTIM in senders}
    unrecorded = {wid for wid in victim_sent if run["statuses_at_kill"].get(pk_of[wid]) == 0}
    resent_after_term = {wid for wid, s in duplicated.items() if s[0] == GRACEFUL}
    bound = CONCURRENCY + 2 * BATCH_SIZE
    report = (
        f"scale-out: {EVENTS} events, {len(delivered)} deliveries "
        f"({', '.join(f'{n} {per_sender[n]}' for n in (SERVE, *WORKERS))}), "
        f"{duplicates} duplicates (first copy by {dict(first_senders)}); "
        f"{VICTIM} killed after sending {len(victim_sent)}, {len(run['victim_in_flight'])} "
        f"of them in the receiver's hands, {len(unrecorded)} sent but not recorded "
        f"(bound {bound}); {GRACEFUL} stopped by SIGTERM in {run['term_seconds']:.2f} s "
        f"(exit {run['term_code']}) with {len(run['graceful_in_flight'])} in the receiver's "
        f"hands, {len(resent_after_term)} of its deliveries sent again by others; "
        f"signalling took {run['signal_seconds']:.1f} s, all recorded after "
        f"{run['deliver_seconds']:.1f} s"
    )
    print(report)
    record_property("duplicates", duplicates)
    record_property("scale_out_report", report)

    # Every process took part.
    assert all(per_sender[name] > 0 for name in (SERVE, *WORKERS)), report
    # No process ever sent one delivery twice (the lease is far longer than an attempt).
    twice = {wid: s for wid, s in copies.items() if max(Counter(s).values()) > 1}
    assert not twice, (
        f"{len(twice)} deliveries sent twice by one process; {report}\n"
        f"{_explain(db_url, list(twice)[:5], delivered, run)}"
    )

    # SIGTERM: worker-2 exits 0 in time (checked by `stop`), its attempts in flight finish and
    # their outcomes are recorded (or the claims released before sending): nothing it sent
    # goes out again.
    assert run["term_code"] == 0, f"worker-2 exited with {run['term_code']}:\n{tail(graceful.log)}"
    assert run["graceful_in_flight"], "worker-2 had nothing in flight at SIGTERM"
    assert not resent_after_term, (
        f"{len(resent_after_term)} deliveries worker-2 sent before stopping on SIGTERM were sent "
        f"again by another process: worker-2 neither recorded their outcomes nor released them "
        f"({len(resent_after_term & run['graceful_in_flight'])} of them were in the receiver's "
        f"hands at the SIGTERM); {report}\n"
        f"{_explain(db_url, sorted(resent_after_term)[:5], delivered, run)}"
    )

    # kill -9: every duplicate's first copy came from the killed worker ...
    not_victims = {wid: s for wid, s in duplicated.items() if s[0] != VICTIM}
    assert not not_victims, (
        f"{len(not_victims)} duplicates whose first copy a live process "
        f"sent; {report}\n{_explain(db_url, list(not_victims)[:5], delivered, run)}"
    )
    # ... and was one it had not recorded at the kill (a recorded outcome makes a delivery
    # non-pending, and only pending ones are claimed).
    assert set(duplicated) <= unrecorded, report
    # Each was sent again exactly once, by a live process, so the duplicates are at most what
    # the killed worker had sent without recording: its attempts in flight (at most
    # --concurrency) plus the finished ones whose outcomes waited for the writer. The claim
    # loop keeps in flight + waiting <= concurrency + batch_size (it counts the backlog beyond
    # one batch against the free slots), and the writer takes up to one more batch out of that
    # list into its open transaction: concurrency + 2 x batch_size in the worst case.
    assert duplicates == len(duplicated) <= len(unrecorded) <= bound, report


def _explain(
    db_url: str, wids: list[str], delivered: list[RecordedRequest], run: dict[str, Any]
) -> str:
    """For a failure message: each copy of these deliveries as the receiver saw it and each
    attempt the database recorded, in seconds relative to the kill and the SIGTERM."""
    marks = run["marks"]

    def when(monotonic: float | None = None, wall: float | None = None) -> str:
        return ", ".join(
            f"{name} {monotonic - mono if monotonic is not None else wall - clock:+.3f} s"
            for name, (mono, clock) in marks.items()
        )

    lines = []
    with psycopg.connect(db_url) as conn:
        for wid in wids:
            lines.append(f"delivery {wid}:")
            lines.extend(
                f"  received from {_sender(r)} at {when(monotonic=r.at)}"
                for r in delivered
                if r.header("webhook-id") == wid
            )
            rows = conn.execute(
                "SELECT a.at, a.ok, a.http_status, a.latency_ms, a.error FROM attempts a"
                " JOIN deliveries d ON d.id = a.delivery_id WHERE d.uid = %s ORDER BY a.id",
                (wid,),
            ).fetchall()
            for at, ok, status, latency, error in rows:
                lines.append(
                    f"  attempt recorded: started at {when(wall=at)}, ok={ok}, "
                    f"status={status}, {latency:.0f} ms, error={error}"
                )
    return "\n".join(lines)


async def _scenario(
    base_url: str,
    key: str,
    db_url: str,
    receiver: TrackingReceiver,
    processes: dict[str, HookcastProcess],
    workdir: Path,
) -> dict[str, Any]:
    serve, victim, graceful, survivor = (processes[n] for n in (SERVE, *WORKERS))
    pids = {name: p.pid for name, p in processes.items()}
    out: dict[str, Any] = {}
    async with api_session(key, SIGNAL_CONCURRENCY + 4) as session:
        # ---- all four up: /health lists each dispatcher with its kind, pid and heartbeat ------
        async def serve_ready() -> bool:
            try:
                async with session.get(f"{base_url}/api/v1/Webhook") as response:
                    assert response.status == 200, await response.text()
                    return True
            except aiohttp.ClientConnectionError:
                return False

        everyone = [serve, victim, graceful, survivor]
        await _until(serve_ready, START_DEADLINE, "serve answering", everyone)
        workers_by_pid: dict[int, dict[str, Any]] = {}

        async def all_listed() -> bool:
            nonlocal workers_by_pid
            workers_by_pid = {w["Pid"]: w for w in (await _health(session, base_url))["Workers"]}
            return set(workers_by_pid) == set(pids.values())

        await _until(all_listed, START_DEADLINE, "/health listing serve and 3 workers", everyone)
        assert {name: workers_by_pid[pid]["Kind"] for name, pid in pids.items()} == {
            SERVE: "serve",
            **dict.fromkeys(WORKERS, "worker"),
        }
        assert all(
            w["Alive"] and abs(time.time() - w["HeartbeatAt"]) < 10 for w in workers_by_pid.values()
        ), workers_by_pid
        # `hookcast workers` shows the same four, with their kind and last heartbeat.
        table = await asyncio.to_thread(run_cli, ["workers", "--db", db_url], workdir)
        assert _workers_table(table) == {pid: w["Kind"] for pid, w in workers_by_pid.items()}, table

        async with session.post(
            f"{base_url}/api/v1/Webhook",
            json={
                "Name": "scale-out test",
                "Events": [EVENT],
                "TargetUrl": receiver.url,
                "Secret": "scale-out-secret",
                "State": "Active",
            },
        ) as created:
            assert created.status == 200, await created.text()

        # A connection opened before the kill, so that reading the database right after it
        # takes milliseconds, well inside the killed worker's lease.
        with psycopg.connect(db_url, autocommit=True) as conn:

            def delivered_events() -> int:
                return len({r.header("webhook-id") for r in deliveries(receiver)})

            started = time.monotonic()
            signalling = asyncio.create_task(
                signal_all(session, base_url, EVENT, EVENTS, SIGNAL_CONCURRENCY, SIGNAL_DEADLINE)
            )
            try:
                # ---- kill -9 worker-1 in the middle, with requests in flight -------------------
                await _until(
                    lambda: (
                        len(deliveries(receiver)) >= KILL_AFTER
                        and bool(receiver.unanswered(AGENTS[VICTIM]))
                    ),
                    RUN_DEADLINE,
                    f"{KILL_AFTER} deliveries, worker-1 busy",
                    everyone,
                )
                # Taken just before the kill: the receiver drops a request's handler as soon as
                # its connection is gone.
                out["victim_in_flight"] = receiver.unanswered(AGENTS[VICTIM])
                kill_wall = time.time()
                out["marks"] = {"kill": (time.monotonic(), kill_wall)}
                victim.kill()
                out["statuses_at_kill"] = _statuses(conn)
                assert out["victim_in_flight"], "worker-1 had nothing in flight at the kill"
                alive = [serve, graceful, survivor]

                # Requests the killed worker had already written to its sockets may still be
                # read by the receiver: wait until its count stops growing (bounded).
                def victim_count() -> int:
                    return sum(1 for r in deliveries(receiver) if _sender(r) == VICTIM)

                seen, settle_end = -1, time.monotonic() + 5
                while victim_count() != seen and time.monotonic() < settle_end:
                    seen = victim_count()
                    await asyncio.sleep(0.2)
                assert delivered_events() < EVENTS, "everything was delivered before the kill"

                # ---- SIGTERM worker-2 while it has attempts in flight --------------------------
                await _until(
                    lambda: (
                        delivered_events() >= TERM_AFTER
                        and bool(receiver.unanswered(AGENTS[GRACEFUL]))
                    ),
                    RUN_DEADLINE,
                    f"{TERM_AFTER} events delivered, worker-2 busy",
                    alive,
                )
                out["graceful_in_flight"] = receiver.unanswered(AGENTS[GRACEFUL])
                out["marks"]["sigterm"] = (time.monotonic(), time.time())
                out["term_code"], out["term_seconds"] = await graceful.stop(
                    signal.SIGTERM, STOP_DEADLINE
                )
                out["marks"]["exited"] = (time.monotonic(), time.time())
                alive = [serve, survivor]

                # ---- the rest: every event delivered and recorded ------------------------------
                out["signal_seconds"] = 0.0
                statuses = await asyncio.wait_for(signalling, SIGNAL_DEADLINE)
                out["signal_seconds"] = time.monotonic() - started
                assert Counter(statuses.values()) == {204: EVENTS}, Counter(statuses.values())

                def all_recorded() -> bool:
                    by_pk = _statuses(conn)
                    return len(by_pk) == EVENTS and all(s == 1 for s in by_pk.values())

                await _until(
                    lambda: delivered_events() == EVENTS,
                    RUN_DEADLINE,
                    "every event at the receiver",
                    alive,
                )
                await _until(
                    all_recorded, RUN_DEADLINE, "every delivery recorded as delivered", alive
                )
                out["deliver_seconds"] = time.monotonic() - started
            finally:
                if not signalling.done():  # a failure above: do not leave it running
                    signalling.cancel()
                await asyncio.gather(signalling, return_exceptions=True)

        # ---- /health now: the stopped worker removed its row, the killed one's is stale -------
        async def heartbeats_after_kill() -> bool:
            nonlocal workers_by_pid
            workers_by_pid = {w["Pid"]: w for w in (await _health(session, base_url))["Workers"]}
            return all(
                pid in workers_by_pid and workers_by_pid[pid]["HeartbeatAt"] > kill_wall
                for pid in (pids[SERVE], pids[SURVIVOR])
            )

        await _until(heartbeats_after_kill, 15, "fresh heartbeats from serve and worker-3", alive)
        assert set(workers_by_pid) == {pids[SERVE], pids[VICTIM], pids[SURVIVOR]}, workers_by_pid
        assert workers_by_pid[pids[VICTIM]]["HeartbeatAt"] <= kill_wall, workers_by_pid
        assert all(workers_by_pid[pids[n]]["Attempts"] > 0 for n in (SERVE, SURVIVOR)), (
            workers_by_pid
        )

    # ---- the others stop cleanly too ------------------------------------------------------
    for process, sig in ((survivor, signal.SIGTERM), (serve, signal.SIGINT)):
        code, _ = await process.stop(sig, STOP_DEADLINE)
        assert code == 0, f"{process.name} exited with {code}:\n{tail(process.log)}"
    return out
