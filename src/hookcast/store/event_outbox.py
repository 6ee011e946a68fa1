"""The event outbox's SQL: an application appends an event inside its own transaction
(hookcast.sqlalchemy, hookcast.contrib.django); a dispatcher moves committed rows into
events and deliveries (dispatch/outbox_drain.py). With PostgreSQL, hookcast's tables may
live in their own schema of the application's database: the application side names it."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy import Connection, MetaData, Table, delete, exists, or_, select

from .codec import from_json
from .dialect import NOTIFY_CHANNEL
from .queue import Handover, insert_events
from .rows import Claimed, NewEvent, event_values
from .schema import api_keys, event_outbox, webhooks


@functools.lru_cache(maxsize=16)
def tables(schema: str | None) -> tuple[Table, Table, Table]:
    """(event_outbox, api_keys, webhooks), in `schema` (None: the connection's default)."""
    if schema is None:
        return event_outbox, api_keys, webhooks
    metadata = MetaData(schema=schema)
    return (
        event_outbox.to_metadata(metadata),
        api_keys.to_metadata(metadata),
        webhooks.to_metadata(metadata),
    )


def has_outbox(conn: Connection, schema: str | None) -> bool:
    """Whether this database holds hookcast's tables (at a revision with the outbox)."""
    return bool(conn.dialect.has_table(conn, "event_outbox", schema=schema))


def tenant_known(conn: Connection, tenant: str, schema: str | None) -> bool:
    """A tenant hookcast knows: one with an API key or a webhook."""
    _, keys, hooks = tables(schema)
    found = select(
        or_(
            exists().where(keys.c.tenant == tenant),
            exists().where(hooks.c.tenant == tenant),
        )
    )
    return bool(conn.execute(found).scalar())


COLUMNS = (
    "tenant",
    "name",
    "primary_key",
    "associate_id",
    "occurred_at",
    "changes",
    "change_values",
    "row_values",
    "field_values",
    "created_at",
)


def row(e: NewEvent, now: float) -> tuple[object, ...]:
    """An event as an outbox row, in the order of COLUMNS."""
    return event_values(e, now)


def append(conn: Connection, events: Sequence[NewEvent], now: float, schema: str | None) -> None:
    """Write events into the outbox in the caller's transaction, on the driver's own cursor
    (an application pays for this on every signal: SQLAlchemy's statement machinery would
    cost as much as the application's own insert). On PostgreSQL the statement also sends
    the dispatchers' NOTIFY (see dbapi_insert)."""
    prefix = f"{conn.dialect.identifier_preparer.quote_schema(schema)}." if schema else ""
    sql = _insert_for(prefix, conn.dialect.name == "postgresql", conn.dialect.paramstyle)
    rows = [row(e, now) for e in events]
    cursor = conn.connection.cursor()
    try:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    finally:
        cursor.close()


@functools.lru_cache(maxsize=64)
def _insert_for(prefix: str, postgres: bool, paramstyle: str) -> str:
    sql = dbapi_insert(prefix, postgres)
    if paramstyle == "qmark":
        return sql.replace("%s", "?")
    if paramstyle in ("numeric_dollar", "numeric"):
        mark = "$" if paramstyle == "numeric_dollar" else ":"
        parts = sql.split("%s")
        return "".join(
            f"{part}{mark}{i + 1}" if i < len(parts) - 1 else part for i, part in enumerate(parts)
        )
    return sql  # format, pyformat


# The same for a plain DB-API cursor with `%s` marks (Django's). `prefix`: "" or a quoted
# schema and a dot.


def dbapi_insert(prefix: str, postgres: bool) -> str:
    """One outbox row. On PostgreSQL the same statement sends the dispatchers' NOTIFY, which
    PostgreSQL delivers at commit and drops on rollback (a savepoint's too): one round trip."""
    names = ", ".join(COLUMNS)
    if not postgres:
        return f"INSERT INTO {prefix}event_outbox ({names}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    casts = "%s, %s, %s::bigint, %s::integer, %s, %s, %s, %s, %s, %s::double precision"
    return (
        f"INSERT INTO {prefix}event_outbox ({names}) SELECT {casts} "
        f"FROM (SELECT pg_notify('{NOTIFY_CHANNEL}', '')) AS wake"
    )


def dbapi_has_outbox(prefix: str, postgres: bool) -> tuple[str, tuple[str, ...]]:
    if postgres:
        return "SELECT to_regclass(%s) IS NOT NULL", (f"{prefix}event_outbox",)
    return "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s", (
        "event_outbox",
    )


def dbapi_tenant_known(prefix: str) -> str:
    """Parameters: the tenant, twice."""
    return (
        f"SELECT 1 WHERE EXISTS (SELECT 1 FROM {prefix}api_keys WHERE tenant = %s) "
        f"OR EXISTS (SELECT 1 FROM {prefix}webhooks WHERE tenant = %s)"
    )


def waiting(conn: Connection, limit: int = 1) -> list[int]:
    """The ids of (up to `limit`) events waiting in the outbox, oldest first."""
    query = select(event_outbox.c.id).order_by(event_outbox.c.id).limit(limit)
    return [row[0] for row in conn.execute(query)]


def drain(
    conn: Connection,
    limit: int,
    now: float,
    handover: Handover | None = None,
    only: Sequence[int] | None = None,
) -> tuple[int, list[Claimed], set[int]]:
    """Move up to `limit` outbox rows, oldest first, into events and their deliveries, in one
    transaction: each event is stored exactly once. Concurrent drainers (PostgreSQL) skip
    each other's rows. `only`: just these rows. Returns how many moved and what `queue.insert_events` returns about
    the deliveries (handed to the local dispatcher, or queued for these webhooks)."""
    query = select(event_outbox).order_by(event_outbox.c.id).limit(limit)
    if only is not None:
        query = query.where(event_outbox.c.id.in_(only))
    rows = conn.execute(query.with_for_update(skip_locked=True)).all()
    if not rows:
        return 0, [], set()
    batch = [
        NewEvent(
            tenant=r.tenant,
            name=r.name,
            primary_key=r.primary_key,
            associate_id=r.associate_id,
            occurred_at=r.occurred_at,
            changes=from_json(r.changes) or [],
            change_values=from_json(r.change_values),
            row_values=from_json(r.row_values),
            field_values=from_json(r.field_values),
        )
        for r in rows
    ]
    _, handed, queued = insert_events(conn, batch, now, handover)
    conn.execute(delete(event_outbox).where(event_outbox.c.id.in_([r.id for r in rows])))
    return len(rows), handed, queued
