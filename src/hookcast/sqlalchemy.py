"""The transactional outbox for SQLAlchemy applications: signal an event inside your own
transaction, and it is delivered if and only if that transaction commits.

    from hookcast.sqlalchemy import signal

    with Session(engine) as session, session.begin():
        session.add(contact)
        session.flush()
        signal(session, "contact.created", contact.id, tenant="Cust1234")

`signal` writes one compact row into hookcast's `event_outbox` table on the caller's
connection, in the caller's transaction; nothing else. A running dispatcher (`hookcast serve`,
`hookcast worker`, a delivering `Hub`) on the same database moves committed rows into events
and deliveries (dispatch/outbox_drain.py): the application's transaction stays one insert
long, needs no webhook index and takes no lock on hookcast's tables. The dispatcher is woken
after the commit: PostgreSQL delivers the NOTIFY sent inside the transaction only when it
commits; on SQLite the doorbell (store/doorbell.py) is rung as it commits.

hookcast's tables must be in the application's database: the same SQLite file, or on
PostgreSQL the same database, in the default schema or in a schema of their own (`schema=`
here; hookcast's processes then connect with `?options=-csearch_path%3D<schema>`).
`migrate(connection)` creates or upgrades them from the application's own migrations.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from .errors import OutboxError, ValidationError
from .intake import new_event
from .store import event_outbox
from .store.doorbell import Doorbell
from .store.migrate import upgrade
from .store.rows import NewEvent

__all__ = ["OutboxError", "migrate", "signal", "signal_async"]

_RING = "hookcast_outbox_ring"  # conn.info: ring the doorbell when this connection commits


class _EngineState:
    """What one application engine has been checked for, so a signal costs one insert."""

    def __init__(self, engine: Engine) -> None:
        self.checked: set[str | None] = set()  # schemas that hold the outbox
        self.tenants: set[tuple[str | None, str]] = set()  # known (schema, tenant)
        self.doorbell: Doorbell | None = None
        self.lock = threading.Lock()
        if engine.dialect.name == "sqlite":
            path = engine.url.database
            if path and path != ":memory:":
                self.doorbell = Doorbell(path)
                event.listen(engine, "commit", self._committing)
                event.listen(engine, "rollback", lambda conn: conn.info.pop(_RING, None))

    def _committing(self, conn: Connection) -> None:
        # The commit event comes just before the driver's commit. That is early enough:
        # this transaction holds SQLite's write lock since its insert, and the drainer takes
        # that lock (BEGIN IMMEDIATE) when rung, so it reads only after our commit.
        if conn.info.pop(_RING, False) and self.doorbell is not None:
            with self.lock:  # the doorbell's socket is not for several threads at once
                self.doorbell.ring(None)


_engines: weakref.WeakKeyDictionary[Engine, _EngineState] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def _state(engine: Engine) -> _EngineState:
    state = _engines.get(engine)
    if state is None:
        with _engines_lock:
            state = _engines.get(engine)
            if state is None:
                state = _engines[engine] = _EngineState(engine)
    return state


def _connection(target: Session | Connection) -> Connection:
    if isinstance(target, Session):
        if not target.in_transaction():
            raise OutboxError(
                "hookcast.sqlalchemy.signal needs the session's transaction: call it inside "
                "`with session.begin():` (or after the session began one), so that the event "
                "commits or rolls back with your changes."
            )
        return target.connection()
    if isinstance(target, Connection):
        if not target.in_transaction():
            raise OutboxError(
                "hookcast.sqlalchemy.signal needs a transaction on this connection: call it "
                "inside `with connection.begin():` (or after a statement began one)."
            )
        return target
    raise TypeError(
        f"signal takes a SQLAlchemy Session or Connection, not {type(target).__name__} "
        "(AsyncSession and AsyncConnection: `await signal_async(...)`)."
    )


def _check(conn: Connection, state: _EngineState, schema: str | None, tenant: str) -> None:
    if conn.dialect.name not in ("sqlite", "postgresql"):
        raise OutboxError(
            f"hookcast's outbox works on SQLite and PostgreSQL, not {conn.dialect.name}."
        )
    if schema is not None and conn.dialect.name != "postgresql":
        raise OutboxError("schema= is for PostgreSQL; on SQLite hookcast's tables share the file.")
    if schema not in state.checked:
        if not event_outbox.has_outbox(conn, schema):
            where = f"schema {schema!r} of " if schema else ""
            raise OutboxError(
                f"hookcast's tables are not in {where}this database ({conn.engine.url!r}): "
                "signal on a connection to the database hookcast uses, or create them there "
                "with hookcast.sqlalchemy.migrate(connection)."
            )
        state.checked.add(schema)
    if (schema, tenant) not in state.tenants:
        if not event_outbox.tenant_known(conn, tenant, schema):
            raise ValidationError(
                f"Unknown tenant {tenant!r}: hookcast has no API key and no webhook for it "
                "(create a key first: hookcast keys create --tenant ...)."
            )
        state.tenants.add((schema, tenant))


def _wake_after_commit(conn: Connection) -> None:
    """SQLite: ring the doorbell as this connection commits. (PostgreSQL: the outbox insert
    itself sent NOTIFY, which PostgreSQL delivers at commit and drops on rollback.)"""
    if conn.dialect.name == "sqlite":
        conn.info[_RING] = True


def _write(conn: Connection, events: Sequence[NewEvent], schema: str | None) -> None:
    state = _state(conn.engine)
    for tenant in {e.tenant for e in events}:
        _check(conn, state, schema, tenant)
    event_outbox.append(conn, events, time.time(), schema)
    _wake_after_commit(conn)


def signal(
    target: Session | Connection,
    event: str,
    primary_key: int,
    *,
    tenant: str,
    associate_id: int = 0,
    changes: Sequence[str] | Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    field_values: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    schema: str | None = None,
) -> None:
    """Write an event into hookcast's outbox inside `target`'s open transaction: it is
    delivered once that transaction commits, and never if it rolls back. Arguments as for
    `Hub.signal`; `schema`: the PostgreSQL schema of hookcast's tables (default: the
    connection's). Raises hookcast.ValidationError (bad arguments, unknown tenant) or
    hookcast.OutboxError (no transaction open, no hookcast tables in this database)."""
    item = new_event(
        event,
        primary_key,
        tenant=tenant,
        associate_id=associate_id,
        changes=changes,
        values=values,
        field_values=field_values,
        occurred_at=occurred_at,
    )
    _write(_connection(target), [item], schema)


async def signal_async(
    target: AsyncSession | AsyncConnection,
    event: str,
    primary_key: int,
    **kwargs: Any,
) -> None:
    """`signal` for an AsyncSession or AsyncConnection (same arguments)."""
    if isinstance(target, AsyncSession):
        if not target.in_transaction():
            _connection(target.sync_session)  # raises the error that says why
        conn = await target.connection()
    elif isinstance(target, AsyncConnection):
        conn = target
    else:
        raise TypeError(
            f"signal_async takes an AsyncSession or AsyncConnection, not {type(target).__name__}."
        )
    await conn.run_sync(lambda sync: signal(sync, event, primary_key, **kwargs))


def migrate(connection: Connection, *, schema: str | None = None, revision: str = "head") -> None:
    """Create or upgrade hookcast's tables on the application's connection, in its
    transaction (one is begun if none is open; commit it yourself). hookcast keeps its
    revision in its own table (`hookcast_alembic_version`), so this runs beside your own
    Alembic history, e.g. at the end of your env.py's `run_migrations_online`.
    `schema` (PostgreSQL): put the tables in this schema, created if missing.

    On SQLite, call it with no transaction open when upgrading a database that has data in
    hookcast's tables: some upgrades rebuild tables, which needs foreign keys off for the
    rebuild (set here only outside a transaction, where SQLite allows it)."""
    if schema is not None:
        if connection.dialect.name != "postgresql":
            raise OutboxError(
                "schema= is for PostgreSQL; on SQLite hookcast's tables share the file."
            )
        quoted = connection.dialect.identifier_preparer.quote_schema(schema)
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        previous = connection.execute(text("SHOW search_path")).scalar_one()
        connection.execute(text(f"SET LOCAL search_path TO {quoted}"))
        try:
            upgrade(connection, revision)
        finally:
            connection.execute(text("SELECT set_config('search_path', :p, true)"), {"p": previous})
        return
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        driver = connection.connection.driver_connection
        assert driver is not None
        keys = driver.execute("PRAGMA foreign_keys").fetchone()[0]
        driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                upgrade(connection, revision)
        finally:
            driver.execute(f"PRAGMA foreign_keys={'ON' if keys else 'OFF'}")
        return
    upgrade(connection, revision)
