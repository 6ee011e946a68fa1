"""The SQLite doorbell (store/doorbell.py): cross-process wake-ups over Unix datagram sockets.

The unit tests drive `Doorbell` directly: who is woken by a ring and who is not, stale
sockets of processes that are gone, a missing directory, and `close()`. The integration
test runs a real `hookcast worker` with a 60 s poll interval and signals from a
`Hub(deliver=False)` in this process: only the doorbell can make the delivery arrive
within seconds.

SQLite only (PostgreSQL wakes other processes with LISTEN/NOTIFY, see test_postgres.py),
so the whole module is skipped when the suite runs on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.databases import ON_POSTGRES
from support.engine import CALLER, SECRET, TENANT, eventually
from support.processes import HookcastProcess, deliveries, tail
from support.receivers import Receiver

from hookcast.api.schemas import WebhookIn
from hookcast.hub import Hub
from hookcast.registry import Registry
from hookcast.settings import Settings
from hookcast.store import queue
from hookcast.store.doorbell import Doorbell

pytestmark = [
    pytest.mark.slow,  # sockets between processes, and a real worker process
    pytest.mark.skipif(
        ON_POSTGRES, reason="the doorbell is SQLite-only; PostgreSQL uses LISTEN/NOTIFY"
    ),
    pytest.mark.skipif(
        sys.platform == "win32", reason="needs AF_UNIX datagram sockets and POSIX signals"
    ),
]

# A ring is one sendto() on a Unix datagram socket: by the time ring() returns, the byte is
# queued at every listener, so its callback runs within a few loop iterations. Positive
# waits are bounded generously. "Nobody was woken" is shown with a barrier ring (see
# Bell.stays_quiet), not by waiting; only a listener that is gone has no socket to send a
# barrier to, and there nothing arriving is checked for this long.
WAKE_DEADLINE = 5.0
CLOSED_QUIET = 0.1
BARRIER = 424242  # the webhook id a barrier ring names; no test rings it otherwise

# Integration test deadlines (seconds). Nothing sleeps for a fixed long time; all poll.
START_DEADLINE = 30
DELIVERY_DEADLINE = 15  # far below the worker's 60 s poll interval
STOP_DEADLINE = 15
EVENT = "contact.changed"
WORKER_AGENT = "hookcast-doorbell/worker"


class Bell:
    """A callback for `Doorbell.listen` that counts its calls and can be awaited."""

    def __init__(self) -> None:
        self.calls = 0
        self.webhooks: list[set[int] | None] = []
        self.rung = asyncio.Event()

    def __call__(self, webhooks: set[int] | None) -> None:
        self.calls += 1
        self.webhooks.append(webhooks)
        self.rung.set()

    def reset(self) -> None:
        self.calls = 0
        self.webhooks.clear()
        self.rung.clear()

    async def wait(self) -> None:
        await asyncio.wait_for(self.rung.wait(), WAKE_DEADLINE)

    async def stays_quiet(self, barrier: Doorbell) -> None:
        """No ring sent before this call reached this bell. `barrier` (a doorbell whose
        rings reach this bell's listener) rings now, naming BARRIER: a ring is queued at
        the listener's socket when ring() returns, a datagram socket keeps its queue in
        order, and the listener reads all that is queued in one go; so any earlier ring
        would have come before the barrier's or with it (making the ids None or more)."""
        assert self.calls == 0, f"rung before the barrier: {self.webhooks}"
        barrier.ring({BARRIER})
        await self.wait()
        assert self.webhooks == [{BARRIER}], "an earlier ring came before the barrier"
        self.reset()

    async def stays_quiet_closed(self) -> None:
        """No ring reaches the callback of a listener that has closed. A bounded wait: its
        socket is gone, so there is nothing a barrier ring could queue behind; and a
        datagram that did arrive would be read within a loop iteration of this sleep."""
        await asyncio.sleep(CLOSED_QUIET)
        assert self.calls == 0 and not self.rung.is_set()


@pytest.fixture
def doorbells(tmp_path: Path) -> Iterator[Callable[..., Doorbell]]:
    """`doorbells("name.db")`: a Doorbell for a database file in tmp_path (so the doorbell
    directory, keyed by the file's real path, is this test's own). All are closed and
    their directories removed afterwards."""
    made: list[Doorbell] = []

    def make(name: str = "hookcast.db") -> Doorbell:
        bell = Doorbell(str(tmp_path / name))
        made.append(bell)
        return bell

    yield make
    for bell in made:
        bell.close()
    for directory in {bell.directory for bell in made}:
        shutil.rmtree(directory, ignore_errors=True)


def _sockets(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


# ----- Doorbell ---------------------------------------------------------------------------------


async def test_ring_wakes_listeners_of_the_same_database_only(doorbells) -> None:
    listener, ringer = doorbells("a.db"), doorbells("a.db")
    other_listener, other_ringer = doorbells("b.db"), doorbells("b.db")
    assert (
        listener.directory == ringer.directory != other_listener.directory == other_ringer.directory
    )

    woken, other_woken = Bell(), Bell()
    listener.listen(woken)
    other_listener.listen(other_woken)

    ringer.ring()
    await woken.wait()
    await other_woken.stays_quiet(other_ringer)  # a ring for a.db never reaches b.db's worker

    woken.reset()
    other_ringer.ring()
    await other_woken.wait()
    await woken.stays_quiet(ringer)


async def test_a_ring_names_the_webhooks_or_says_any(doorbells) -> None:
    listener, ringer = doorbells(), doorbells()
    woken = Bell()
    assert listener.listen(woken)
    ringer.ring({3, 7})
    await woken.wait()
    assert woken.webhooks == [{3, 7}]
    woken.rung.clear()
    ringer.ring(None)  # e.g. deliveries handed back: any webhook
    await woken.wait()
    assert woken.webhooks[-1] is None
    woken.rung.clear()
    ringer.ring(range(1000, 2000))  # too many to name: any
    await woken.wait()
    assert woken.webhooks[-1] is None


async def test_ring_skips_the_listener_of_the_same_instance(doorbells) -> None:
    listener, witness = doorbells(), doorbells()
    own, witnessed = Bell(), Bell()
    listener.listen(own)
    witness.listen(witnessed)

    listener.ring()
    await witnessed.wait()  # the ring did go out, to the other listener...
    await own.stays_quiet(witness)  # ...but not to the ringer's own socket


async def test_ring_removes_the_socket_of_a_process_that_is_gone(doorbells) -> None:
    live, ringer = doorbells(), doorbells()
    woken = Bell()
    live.listen(woken)
    # What a process killed with SIGKILL leaves behind: a bound socket file, nobody reading.
    stale = live.directory / "999999-deadbeef"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(stale))
    sock.close()
    assert stale.exists()

    ringer.ring()  # must not raise

    assert not stale.exists()
    await woken.wait()  # the live listener was still rung
    assert _sockets(live.directory) == [Path(live._own).name]  # type: ignore[arg-type]


async def test_ring_without_a_directory_does_nothing(doorbells) -> None:
    ringer = doorbells()
    assert not ringer.directory.exists()
    ringer.ring()  # nobody listens: no error
    ringer.ring()
    assert not ringer.directory.exists()  # and ringing creates nothing


async def test_close_removes_the_listeners_socket(doorbells) -> None:
    listener, ringer = doorbells(), doorbells()
    woken = Bell()
    listener.listen(woken)
    assert len(_sockets(listener.directory)) == 1

    listener.close()

    assert _sockets(listener.directory) == []
    ringer.ring()  # nothing left to ring, no error
    await woken.stays_quiet_closed()
    listener.close()  # a second close is harmless


async def test_a_doorbell_that_cannot_listen_does_not_stop_the_hub(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A socket path longer than AF_UNIX allows (what TMPDIR=<long path> gives): the Hub
    # starts anyway, says so, and relies on polling.
    long_tmp = tmp_path / ("t" * 100)
    long_tmp.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    hub = Hub(Settings(database_url=f"sqlite:///{tmp_path / 'long.db'}"))
    assert hub.db.doorbell is not None and len(str(hub.db.doorbell.directory)) > 110
    try:
        await hub.start()
        assert hub.dispatcher is not None
        assert "no cross-process wake-ups" in caplog.text
        assert await hub.signal(EVENT, 1, tenant=TENANT) > 0  # and it stores signals
    finally:
        await hub.close()


async def test_a_directory_open_to_others_is_not_rung_until_its_owner_listens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Group- or world-writable: someone else could plant or replace sockets in it. A ringer
    # does not use it; a listener, being its owner, takes the others' access away first.
    short = Path(tempfile.mkdtemp(prefix="hc-"))  # tmp_path can be too deep for a socket path
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    bell = Doorbell(str(tmp_path / "shared.db"))
    bell.directory.mkdir(parents=True)
    bell.directory.parent.chmod(0o777)
    try:
        planted = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        planted.bind(str(bell.directory / "planted"))
        planted.setblocking(False)
        bell.ring()  # must not send into a directory it does not trust
        with pytest.raises(BlockingIOError):
            planted.recv(8)
        assert bell.listen(lambda: None)
        assert bell.directory.parent.stat().st_mode & 0o777 == 0o700
        Doorbell(str(tmp_path / "shared.db")).ring()  # now it is private: rung
        assert planted.recv(8) == b"*"
        planted.close()
    finally:
        bell.close()
        shutil.rmtree(short, ignore_errors=True)


# ----- a real worker process ----------------------------------------------------------------------


async def _until(
    condition: Callable[[], object], deadline: float, what: str, worker: HookcastProcess
) -> None:
    """`eventually`, failing at once if the worker died, with its log's tail on failure."""

    async def check() -> object:
        worker.check_alive()
        value = condition()
        return await value if asyncio.iscoroutine(value) else value

    try:
        await eventually(check, deadline, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{tail(worker.log)}") from None


async def test_a_signal_from_another_process_wakes_an_idle_worker(
    tmp_path: Path,
    receiver: Receiver,
    ca_bundle_path: str,
    processes: dict[str, HookcastProcess],
    record_property: Callable[[str, object], None],
) -> None:
    db_file = tmp_path / "doorbell.db"
    db_url = f"sqlite:///{db_file}"
    directory = Doorbell(str(db_file)).directory
    env = {
        # Only this test's HOOKCAST_* settings: none inherited from the caller's environment.
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")},
        "HOOKCAST_DATABASE_URL": db_url,
        "HOOKCAST_ALLOW_TARGETS": "127.0.0.0/8",
        "HOOKCAST_CA_BUNDLE": ca_bundle_path,
        "HOOKCAST_POLL_INTERVAL": "60",  # polling cannot explain a delivery within seconds
        "HOOKCAST_USER_AGENT": WORKER_AGENT,
    }
    try:
        worker = processes["worker"] = HookcastProcess(
            tmp_path, env, "worker", ["worker", "--db", db_url]
        )
        # Printed once the Hub has started, i.e. migrated and listening on its doorbell.
        await _until(
            lambda: "hookcast worker delivering" in worker.log.read_text(errors="replace"),
            START_DEADLINE,
            "the worker to start",
            worker,
        )
        assert len(_sockets(directory)) == 1, "the worker listens on one doorbell socket"

        settings = Settings(
            database_url=db_url,
            ca_bundle=ca_bundle_path,
            allow_targets=["127.0.0.0/8"],
            poll_interval=60,
        )
        async with Hub(settings, deliver=False) as app:
            registry = Registry(app.db, settings, app.sender, wake=app.wake)
            await registry.create(
                CALLER,
                WebhookIn.model_validate(
                    {
                        "Name": "doorbell",
                        "Events": [EVENT],
                        "TargetUrl": receiver.url,
                        "Secret": SECRET,
                        "State": "Active",
                        "Type": "webhook",
                    }
                ),
            )
            # Its claimer must be past its first claim, so that only a wake-up can make it
            # claim again within 60 s. Its first heartbeat shows that: the claim loop starts
            # before the heartbeat loop and SQLite has one database thread, so the worker
            # commits its first claim before its first heartbeat. (The look at the next due
            # time that follows the claim is queued behind the heartbeat: in the moment
            # between the two a signal could be found without the ring. That can only let
            # this test pass without the doorbell, never fail it, and no signal commits
            # that soon after the heartbeat becomes visible here.)
            await _until(
                lambda: app.db.read(queue.list_workers),
                START_DEADLINE,
                "the worker's heartbeat",
                worker,
            )
            assert deliveries(receiver) == []

            signalled = time.monotonic()
            await app.signal(EVENT, 5, tenant=TENANT)
            await _until(
                lambda: deliveries(receiver),
                DELIVERY_DEADLINE,
                "the worker to deliver the event",
                worker,
            )

        [delivered] = deliveries(receiver)
        record_property("wake_to_delivery_ms", round((delivered.at - signalled) * 1000, 1))
        assert delivered.header("User-Agent") == WORKER_AGENT  # the worker sent it, not us
        assert delivered.at - signalled < DELIVERY_DEADLINE

        worker.stop_or_kill(signal.SIGTERM, STOP_DEADLINE)
        log = worker.log.read_text(errors="replace")
        assert worker.proc.returncode == 0, log
        assert "Traceback" not in log, log
        assert _sockets(directory) == [], "the worker removes its doorbell socket when it stops"
    finally:
        for process in processes.values():
            process.close()  # also on failure: nothing keeps running
        shutil.rmtree(directory, ignore_errors=True)
