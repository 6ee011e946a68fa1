"""The database handle: one SQLAlchemy engine, migrations at start-up, and the hand-off of
each transaction to a dedicated thread (for SQLite one thread owns the connection, which is
faster than aiosqlite and keeps writes serialized).

`sqlite:///:memory:` (or `sqlite://`) is one private in-memory database per `Database`, for
unit tests: one connection shared by every thread (a StaticPool; SQLAlchemy's default for
memory gives each thread its own, empty database), one transaction at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from .. import logs  # noqa: F401  (its import puts the Redact filter on hookcast's loggers)
from ..errors import DatabaseUnavailable
from ..outage import OutageReporter
from .doorbell import Doorbell
from .migrate import MIGRATIONS as MIGRATIONS  # re-exported: tests migrate step by step
from .migrate import upgrade

T = TypeVar("T")
# Set by Dialect.notify on SQLite: ring the doorbell once this transaction has committed, for
# these webhooks (a set; None: any).
RING_AFTER_COMMIT = "hookcast_ring"
_NO_RING = object()
log = logging.getLogger("hookcast")


def unavailable(exc: BaseException) -> bool:
    """The database cannot be used right now (not: this statement is wrong). Operational
    errors are connections refused or lost, a server shutting down, a read-only or full
    disk, locks timing out (SQLite reports a missing table this way too)."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and pick the installed psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.doorbell: Doorbell | None = None
        # One per process: every loop's failures are one outage, logged as one.
        self.health = OutageReporter("database", log)
        # In memory: the one connection serves one transaction at a time, whatever thread.
        self._one_at_a_time: threading.Lock | None = None
        if self.is_sqlite:
            db_file = _sqlite_file(self.url)
            if db_file is None:
                self._one_at_a_time = threading.Lock()
            else:
                self.doorbell = Doorbell(db_file)
            self.engine = _sqlite_engine(self.url, sqlite_synchronous)
            workers = 1
        else:
            self.engine = create_engine(
                self.url, pool_size=8, max_overflow=8, pool_pre_ping=True, hide_parameters=True
            )
            workers = 8
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="hookcast-db")

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe on every start)."""
        with self._exclusive(), self.engine.connect() as conn:
            if not self.is_sqlite:
                with conn.begin():
                    upgrade(conn)
                return
            # SQLite changes a table by rebuilding it, and dropping the old one would
            # cascade-delete its children's rows while foreign keys are on. The pragma only
            # takes effect outside a transaction: set on the driver's connection directly.
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    upgrade(conn)
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:  # rolls the migration back
                        raise RuntimeError(f"migration left broken references: {broken[:5]}")
            finally:
                driver.execute("PRAGMA foreign_keys=ON")

    def run_sync(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run `fn(conn, *args)` in one transaction on the calling thread. A read-only one
        (`write=False`) does not take SQLite's write lock. Raises DatabaseUnavailable (and
        reports the outage to `health`) when the database cannot be used."""
        try:
            result = self._transaction(fn, args, write)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.health.failed(exc)
            # Without the cause: its text is in the outage's log lines, its traceback in none.
            raise DatabaseUnavailable("The database is unavailable; try again later.") from None
        self.health.succeeded()
        return result

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        with self._exclusive(), self.engine.connect() as conn:
            conn.info["hookcast_read_only"] = not write
            conn.info.pop(RING_AFTER_COMMIT, None)  # info outlives the checkout
            with conn.begin():
                result = fn(conn, *args)
            ring = conn.info.pop(RING_AFTER_COMMIT, _NO_RING)
            if ring is not _NO_RING and self.doorbell is not None:
                self.doorbell.ring(ring)
            return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in one transaction on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.run_sync, fn, *args)
        )

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Like `run`, for a transaction that only reads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.run_sync, fn, *args, write=False)
        )

    def _exclusive(self) -> contextlib.AbstractContextManager[object]:
        return self._one_at_a_time or contextlib.nullcontext()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.doorbell is not None:
            self.doorbell.close()
        self.engine.dispose()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for an in-memory database."""
    path = make_url(url).database
    return path if path and path != ":memory:" else None


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    db_file = _sqlite_file(url)
    connect_args = {"check_same_thread": False, "timeout": 30}
    if db_file is None:
        engine = create_engine(
            url, connect_args=connect_args, poolclass=StaticPool, hide_parameters=True
        )
    else:
        Path(db_file).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=connect_args, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: several processes (serve, CLI) share the
        # file, and a deferred transaction that upgrades to a writer later can fail with
        # SQLITE_BUSY. Readers need no lock at all in WAL mode.
        read_only = conn.info.get("hookcast_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
