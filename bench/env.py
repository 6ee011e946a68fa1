"""What every scenario shares: TLS material, the receiver and hookcast processes, settings,
memory readings and a description of the machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme

from hookcast import Settings, State
from hookcast.store import queries, queue
from hookcast.store.database import Database

REPO = Path(__file__).resolve().parent.parent
TENANT = "Bench1"
ASSOCIATE = 1
SECRET = "bench-secret-0123456789"


def signed_payload(
    event: str, primary_key: int, webhook_name: str, field_values: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """A delivery as hookcast builds it (its own build_body / build_headers), for the
    baseline clients: the same bytes and headers, signed with SECRET."""
    from datetime import UTC, datetime

    from hookcast.payload import build_body, build_headers, format_timestamp

    event_id = str(uuid.uuid4())
    body = build_body(
        event_id=event_id,
        timestamp=format_timestamp(datetime.now(UTC)),
        changes=["name"],
        event=event,
        primary_key=primary_key,
        entity="bench",
        tenant=TENANT,
        associate_id=ASSOCIATE,
        webhook_name=webhook_name,
        field_values=field_values,
    )
    headers = build_headers(
        event_header=event,
        event_id=event_id,
        retry=0,
        body=body,
        secret=SECRET,
        delivery_id=str(uuid.uuid4()),
        timestamp=int(time.time()),
        custom=None,
        user_agent="hookcast/bench",
        standard_webhooks=True,
    )
    return body, headers


# ----- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca_path: str  # the CA hookcast trusts (HOOKCAST_CA_BUNDLE) and the ceiling client too
    cert_path: str  # the receivers' leaf certificate chain
    key_path: str

    @classmethod
    def create(
        cls,
        directory: Path,
        identities: tuple[str, ...] = ("127.0.0.1", "localhost"),
        prefix: str = "",
    ) -> Tls:
        """A fresh trustme CA and one leaf certificate for `identities` (names or IP
        addresses: one certificate may cover many), written as <prefix>ca.pem, cert.pem, key.pem."""
        ca = trustme.CA()
        leaf = ca.issue_cert(*identities)
        paths = {name: str(directory / f"{prefix}{name}.pem") for name in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(paths["ca"])
        leaf.private_key_pem.write_to_path(paths["key"])
        with open(paths["cert"], "wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())
        return cls(paths["ca"], paths["cert"], paths["key"])


# ----- processes ----------------------------------------------------------------------------


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKCAST_")}
    # The processes import this tree's hookcast (src/), not whichever one is installed: a
    # harness run from another checkout measures that checkout.
    paths = [str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    found[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread; keeps the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_kib = 0
        self.hwm_kib = 0
        self.samples: list[tuple[float, int]] = []  # (monotonic, KiB), thinned to 1 per second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        last_kept = 0.0
        while not self._stop.is_set():
            status = read_status(self.pid)
            if not status:
                break
            rss = status.get("VmRSS", 0)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.hwm_kib = max(self.hwm_kib, status.get("VmHWM", 0))
            now = time.monotonic()
            if now - last_kept >= 1.0:
                self.samples.append((now, rss))
                last_kept = now
            self._stop.wait(self.interval)

    def current_kib(self) -> int:
        return read_status(self.pid).get("VmRSS", 0)

    def stop(self) -> None:
        status = read_status(self.pid)  # the kernel's own high-water mark, read last
        self.hwm_kib = max(self.hwm_kib, status.get("VmHWM", 0))
        self._stop.set()
        self._thread.join(timeout=2)


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; only the process we started, by its pid."""
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        proc.terminate()
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await proc.wait()


class Receiver:
    """A `python -m bench.receiver` process and a client for its control port."""

    def __init__(
        self, tls: Tls, workdir: Path, *, mode: str = "ok", name: str = "receiver"
    ) -> None:
        self.tls = tls
        self.workdir = workdir
        self.mode = mode
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.control_port = 0
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, port: int = 0) -> Receiver:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.receiver",
            "--cert",
            self.tls.cert_path,
            "--key",
            self.tls.key_path,
            "--secret",
            SECRET,
            "--mode",
            self.mode,
            "--port",
            str(port or self.port or 0),
            "--control-port",
            str(self.control_port or 0),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=python_env(),
            cwd=str(REPO),
        )
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        while True:
            line = await asyncio.wait_for(
                self.proc.stdout.readline(), max(0.1, deadline - time.monotonic())
            )
            if not line:
                raise RuntimeError(
                    f"{self.name} exited before it was ready; see {self.workdir}/{self.name}.log"
                )
            if line.startswith(b"READY "):
                info = json.loads(line[6:])
                self.port, self.control_port = info["port"], info["control_port"]
                break
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    def _control_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.control_port}{path}"

    async def count(self) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(self._control_url("/_count")) as r:
            return await r.json()

    async def stats(self, samples: bool = True) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(
            self._control_url("/_stats"), params={"samples": int(samples)}
        ) as r:
            return await r.json(content_type=None)

    async def reset(self) -> None:
        assert self._http is not None
        async with self._http.post(self._control_url("/_reset")) as r:
            r.raise_for_status()

    async def set_mode(self, mode: str) -> None:
        assert self._http is not None
        async with self._http.post(self._control_url("/_control"), json={"mode": mode}) as r:
            r.raise_for_status()

    async def wait_count(
        self, n: int, timeout: float, interval: float = 0.02, on_count: Any = None
    ) -> dict[str, Any]:
        """Poll until `n` good deliveries arrived or `timeout` passed; returns the last counts."""
        deadline = time.monotonic() + timeout
        while True:
            counts = await self.count()
            if on_count is not None:
                on_count(counts["count"])
            if counts["count"] >= n or time.monotonic() >= deadline:
                return counts
            await asyncio.sleep(interval)

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections queue in the kernel, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.proc is not None:
            await stop_process(self.proc)
            self.proc = None


# ----- hookcast -----------------------------------------------------------------------------


@dataclass
class HookcastConfig:
    """The hookcast settings every scenario starts from (and reports)."""

    tls: Tls
    synchronous: str = "FULL"
    concurrency: int | None = None  # None: hookcast's default
    per_webhook_concurrency: int | None = None
    batch_size: int | None = None
    # Delivery options of the webhooks the e2e_python and latency scenarios register, as the
    # API takes them (docs/delivery-options.md), e.g. {"Ordering": "PerRecord"}: their cost.
    webhook_options: dict[str, Any] = field(default_factory=dict)

    def overrides(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "allow_targets": ["127.0.0.0/8"],
            "ca_bundle": self.tls.ca_path,
            "sqlite_synchronous": self.synchronous,
        }
        for name in ("concurrency", "per_webhook_concurrency", "batch_size"):
            if (value := getattr(self, name)) is not None:
                values[name] = value
        return values

    def settings(self, db: Path | str, **extra: Any) -> Settings:
        """Settings for a SQLite file (a Path) or any database URL (a str)."""
        return Settings(database_url=db_url(db), **{**self.overrides(), **extra})

    def env(self, db: Path | str, **extra: Any) -> dict[str, str]:
        """The same settings as HOOKCAST_* variables, for `hookcast serve` / `worker`."""
        values = {**self.overrides(), **extra}
        env = {"HOOKCAST_DATABASE_URL": db_url(db)}
        for key, value in values.items():
            env[f"HOOKCAST_{key.upper()}"] = (
                ",".join(value) if isinstance(value, list) else str(value)
            )
        return env

    def describe(self) -> dict[str, Any]:
        s = Settings(**self.overrides())
        return {
            "sqlite_synchronous": s.sqlite_synchronous,
            "concurrency": s.concurrency,
            "per_webhook_concurrency": s.per_webhook_concurrency,
            "batch_size": s.batch_size,
            "max_connections_per_host": s.max_connections_per_host,
            "attempt_timeout_s": s.attempt_timeout,
            "standard_webhooks": s.standard_webhooks,
            "poll_interval_s": s.poll_interval,
            "webhook_options": self.webhook_options,
        }


def webhook_fields(
    name: str, events: list[str], url: str, *, state: State = State.Active
) -> dict[str, Any]:
    return {
        "name": name,
        "events": events,
        "target_url": url,
        "secret": SECRET,
        "state": state,
        "type": "webhook",
        "headers": None,
        "properties": None,
    }


def insert_webhooks(conn: Any, specs: list[tuple[str, list[str], str]]) -> list[int]:
    """Insert Active webhooks in one transaction (no verification POST; for bulk set-ups)."""
    now = time.time()
    return [
        queries.insert_webhook(conn, TENANT, ASSOCIATE, now, webhook_fields(n, e, u))
        for n, e, u in specs
    ]


def db_url(db: Path | str) -> str:
    """A SQLite file (a Path) as a URL; a URL (a str) as it is."""
    return f"sqlite:///{db}" if isinstance(db, Path) else db


def prepare_db(db: Path | str, specs: list[tuple[str, list[str], str]]) -> list[int]:
    """Create the schema (a SQLite file, or in an existing database given by URL) and these
    webhooks (for separate processes)."""
    db = Database(db_url(db))
    try:
        db.migrate()
        return db.run_sync(insert_webhooks, specs)
    finally:
        db.close()


def read_depth(db_path: Path) -> dict[str, int]:
    """Deliveries by status, read without taking the write lock (WAL readers never block)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
    finally:
        conn.close()
    names = {
        int(queue.PENDING): "pending",
        int(queue.DELIVERED): "delivered",
        int(queue.GIVEN_UP): "given_up",
    }
    depth = dict.fromkeys(names.values(), 0)
    depth.update({names[s]: c for s, c in rows})
    return depth


async def wait_recorded(
    db: Path | str, n: int, timeout: float, interval: float = 0.02
) -> tuple[dict[str, int], float]:
    """Poll until `n` deliveries are recorded as delivered (or none is pending any more);
    returns the depth and the monotonic time it was seen. `db`: a SQLite file or a
    PostgreSQL URL."""
    deadline = time.monotonic() + timeout
    reader = read_depth if isinstance(db, Path) else pg_depth
    while True:
        depth = await asyncio.to_thread(reader, db)
        now = time.monotonic()
        if (
            depth["delivered"] >= n
            or (depth["pending"] == 0 and depth["delivered"] + depth["given_up"] >= n)
            or now >= deadline
        ):
            return depth, now
        await asyncio.sleep(interval)


@dataclass
class HookcastProcess:
    """`hookcast serve` or `hookcast worker` as a separate process."""

    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    rss: RssSampler | None = None
    started_at: float = field(default=0.0)

    async def start(self) -> HookcastProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hookcast",
            *self.command,
            stdout=log,
            stderr=log,
            env=python_env(self.env),
            cwd=str(self.log_path.parent),
        )
        log.close()
        self.started_at = time.monotonic()
        self.rss = RssSampler(self.proc.pid).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(
                        f"hookcast exited ({self.proc.returncode}); see {self.log_path}"
                    )
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        await r.read()
                        return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"hookcast did not answer at {url}; see {self.log_path}"
                        ) from None
                    await asyncio.sleep(0.1)

    async def wait_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"hookcast exited ({self.proc.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hookcast did not log {text!r}; see {self.log_path}")
            await asyncio.sleep(0.05)

    async def stop(self) -> int | None:
        if self.rss is not None:
            self.rss.stop()
        if self.proc is None:
            return None
        return await stop_process(self.proc, timeout=20)


async def create_key(db_path: Path, workdir: Path) -> str:
    """`hookcast migrate` (only serve, worker and migrate create a database), then `hookcast
    keys create`; the key is alone on the last line of its output."""
    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hookcast",
        "migrate",
        "--db",
        f"sqlite:///{db_path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=python_env(),
        cwd=str(workdir),
    )
    out, _ = await asyncio.wait_for(migrate.communicate(), 60)
    if migrate.returncode != 0:
        raise RuntimeError(f"hookcast migrate failed: {out.decode(errors='replace')}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hookcast",
        "keys",
        "create",
        "--db",
        f"sqlite:///{db_path}",
        "--tenant",
        TENANT,
        "--associate-id",
        str(ASSOCIATE),
        "--name",
        "bench",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=python_env(),
        cwd=str(workdir),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise RuntimeError(f"hookcast keys create failed: {out.decode(errors='replace')}")
    return out.decode().strip().splitlines()[-1].strip()


# ----- PostgreSQL -----------------------------------------------------------------------------

# The server the postgres_workers scenario uses (any database on it that the user may connect
# to; the scenario creates and drops its own databases next to it).
DEFAULT_POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class PgDatabase:
    """A fresh PostgreSQL database for one measurement: `CREATE DATABASE hc_bench_<random>`
    through the server URL (autocommit), dropped again (WITH (FORCE): connections that a
    killed process left behind do not keep it alive) by `drop()`."""

    def __init__(self, server_url: str, label: str = "") -> None:
        from sqlalchemy.engine import make_url

        self.server_url = server_url
        self.name = f"hc_bench_{os.urandom(4).hex()}{'_' + label if label else ''}"
        self.url = (
            make_url(server_url).set(database=self.name).render_as_string(hide_password=False)
        )
        self.created = False

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.server_url, autocommit=True, connect_timeout=10)

    def create(self) -> PgDatabase:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True
        return self

    def drop(self) -> None:
        from psycopg import sql

        if not self.created:
            return
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self.created = False

    def execute(self, statement: str) -> None:
        """One statement in this database, autocommit (VACUUM, ANALYZE, ...)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)


def pg_depth(url: str) -> dict[str, int]:
    """Deliveries by status in a PostgreSQL database."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall()
    names = {
        int(queue.PENDING): "pending",
        int(queue.DELIVERED): "delivered",
        int(queue.GIVEN_UP): "given_up",
    }
    depth = dict.fromkeys(names.values(), 0)
    depth.update({names[s]: c for s, c in rows})
    return depth


class PgActivity:
    """Samples pg_stat_activity of one database every `interval` seconds in a thread: what its
    backends are doing (state, wait event). `summary()` gives the mean number of backends in
    each state over the samples, e.g. {"active: IO/WALSync": 0.8, "idle in transaction:
    Client/ClientRead": 2.1}: where PostgreSQL time goes (a row lock shows up as
    Lock/transactionid or Lock/tuple, commit fsyncs as IO/WALSync or LWLock/WALWrite)."""

    def __init__(self, url: str, database: str, interval: float = 0.1) -> None:
        self.url = url
        self.database = database
        self.interval = interval
        self.samples = 0
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)

    def start(self) -> PgActivity:
        self._thread.start()
        return self

    def _run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                while not self._stop.is_set():
                    rows = conn.execute(
                        "SELECT coalesce(state, '?'), coalesce(wait_event_type, '-'), coalesce(wait_event, '-'),"
                        " count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                        " AND backend_type = 'client backend' GROUP BY 1, 2, 3",
                        (self.database,),
                    ).fetchall()
                    # Which statements wait for a lock, and after which ones transactions sit
                    # idle waiting for their client (a lock holder's Python in between).
                    rows += conn.execute(
                        "SELECT CASE WHEN wait_event_type = 'Lock' THEN 'lock wait in' ELSE 'idle in"
                        " transaction after' END, '', regexp_replace(left(query, 70), '\\s+', ' ', 'g'),"
                        " count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                        " AND (wait_event_type = 'Lock' OR state = 'idle in transaction') GROUP BY 1, 2, 3",
                        (self.database,),
                    ).fetchall()
                    self.samples += 1
                    for state, wtype, wevent, n in rows:
                        if not wtype:
                            key = f"{state}: {wevent}"
                        else:
                            key = (
                                f"{state}: {wtype}/{wevent}"
                                if wtype != "-"
                                else f"{state}: running"
                            )
                        self.counts[key] = self.counts.get(key, 0) + n
                    self._stop.wait(self.interval)
        except Exception as exc:  # a diagnostic only: never fail the measurement
            self.counts[f"sampling failed: {type(exc).__name__}"] = 0

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.summary()

    def summary(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {k: round(v / n, 2) for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])}


def pg_server(url: str) -> dict[str, Any]:
    """The server's version and the settings that bound its commit rate."""
    import psycopg

    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        out["version"] = conn.execute("SHOW server_version").fetchone()[0]
        for name in (
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "commit_delay",
            "shared_buffers",
            "max_connections",
            "autovacuum",
        ):
            out[name] = conn.execute(f"SHOW {name}").fetchone()[0]
    return out


def processes_named(comm: str) -> list[int]:
    """Pids whose /proc/<pid>/comm is `comm` (the kernel's name, not the retitled argv)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def cpu_of_named(comm: str) -> float:
    """CPU seconds (user + system) used so far by every process named `comm`, including the
    children they reaped: for PostgreSQL, the postmaster's cutime/cstime hold the CPU of the
    backends that already ended, so the difference of two readings is the server's CPU in
    between even when connections come and go. (Every client of the server counts.)"""
    return sum(_jiffies_of(pid, children=True) for pid in processes_named(comm)) / os.sysconf(
        "SC_CLK_TCK"
    )


# ----- the machine ----------------------------------------------------------------------------


def machine(workdir: Path | None = None) -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    versions = {}
    for dist in ("hookcast", "aiohttp", "uvloop", "orjson", "SQLAlchemy", "uvicorn", "fastapi"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    import sqlite3

    git = {}
    with contextlib.suppress(Exception):
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        git["dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "src"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        )
    fs = ""
    with contextlib.suppress(Exception):
        fs = subprocess.run(
            ["df", "--output=fstype", str(workdir or REPO)],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.split()[-1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "filesystem": fs,
        "packages": versions,
        "git": git,
    }


def calibrate(workdir: Path) -> dict[str, float]:
    """Two numbers that say how fast this machine is right now, taken before and after the
    scenarios (a shared or virtual machine drifts): the duration of a tiny durable SQLite
    commit (WAL, synchronous=FULL: one fsync) and of a fixed pure-Python loop."""
    import sqlite3

    from .stats import percentile

    path = workdir / f"calibrate-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        commits = []
        for _ in range(200):
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 200,))
            conn.execute("COMMIT")
            commits.append(time.perf_counter() - t)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
    loops = []
    for _ in range(3):
        t = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i & 7
        loops.append(time.perf_counter() - t)
    steal = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        steal = round(int(fields[7]) / max(sum(int(f) for f in fields), 1) * 100, 2)
    return {
        "sqlite_full_commit_p50_ms": round((percentile(commits, 50) or 0) * 1000, 3),
        "sqlite_full_commit_p99_ms": round((percentile(commits, 99) or 0) * 1000, 3),
        "python_loop_1m_ms": round(min(loops) * 1000, 1),
        "cpu_steal_since_boot_pct": steal,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ----- other work on the machine ------------------------------------------------------------


def _jiffies_of(pid: int, children: bool = False) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # fields[11..14]: utime stime cutime cstime
    return (
        int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    )


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, p in parents.items() if p == pid]
        found.extend(kids)
        frontier.extend(kids)
    return found


class Noise:
    """How busy the machine was with work that is not ours (other processes), in % of all
    cores, between `start()` and `stop()`: total busy time from /proc/stat minus the CPU
    time of this process, its children that ended, and its live descendants — and of the
    processes named in `own_names` (the PostgreSQL server a scenario drives)."""

    def __init__(self, own_names: tuple[str, ...] = ()) -> None:
        self.own_names = own_names
        self.cores = os.cpu_count() or 1
        self._t0 = 0.0
        self._busy0 = 0
        self._ours0 = 0

    @staticmethod
    def _busy() -> int:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)

    def _ours(self) -> int:
        me = os.getpid()
        ours = _jiffies_of(me, children=True) + sum(_jiffies_of(p) for p in _descendants(me))
        for name in self.own_names:
            ours += sum(_jiffies_of(pid, children=True) for pid in processes_named(name))
        return ours

    def start(self) -> Noise:
        self._t0, self._busy0, self._ours0 = time.monotonic(), self._busy(), self._ours()
        return self

    def stop(self) -> float:
        wall = time.monotonic() - self._t0
        busy, ours = self._busy() - self._busy0, self._ours() - self._ours0
        ticks = os.sysconf("SC_CLK_TCK")
        if wall <= 0:
            return 0.0
        return round(max(0, busy - ours) / ticks / (wall * self.cores) * 100, 1)


async def foreign_load(seconds: float = 1.0) -> float:
    """Other processes' CPU use over `seconds`, in % of all cores."""
    noise = Noise().start()
    await asyncio.sleep(seconds)
    return noise.stop()
