"""`signal` on Django's connection: the event is written into hookcast's outbox in the
current `transaction.atomic()` block and delivered if and only if it commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...errors import OutboxError, ValidationError
from ...intake import new_event
from ...store import event_outbox
from ...store.doorbell import Doorbell
from .conf import conf

_checked: set[tuple[str, str]] = set()  # (alias, prefix): holds hookcast's outbox
_tenants: set[tuple[str, str, str]] = set()  # (alias, prefix, tenant) known
_doorbells: dict[str, Doorbell] = {}
_lock = threading.Lock()


def _prefix(connection: Any, schema: str | None) -> str:
    if not schema:
        return ""
    if connection.vendor != "postgresql":
        raise OutboxError(
            "HOOKCAST['SCHEMA'] is for PostgreSQL; on SQLite the tables share the file."
        )
    return f"{connection.ops.quote_name(schema)}."


def _check(connection: Any, alias: str, prefix: str, tenant: str) -> None:
    postgres = connection.vendor == "postgresql"
    if connection.vendor not in ("sqlite", "postgresql"):
        raise OutboxError(
            f"hookcast's outbox works on SQLite and PostgreSQL, not {connection.vendor}."
        )
    if (alias, prefix) not in _checked:
        sql, params = event_outbox.dbapi_has_outbox(prefix, postgres)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if not cursor.fetchone()[0]:
                raise OutboxError(
                    f"hookcast's tables are not in the database {alias!r}: run `manage.py "
                    "migrate` with hookcast.contrib.django in INSTALLED_APPS, or signal with "
                    "using= the database that holds them (HOOKCAST['DATABASE'])."
                )
        _checked.add((alias, prefix))
    if (alias, prefix, tenant) not in _tenants:
        with connection.cursor() as cursor:
            cursor.execute(event_outbox.dbapi_tenant_known(prefix), (tenant, tenant))
            if cursor.fetchone() is None:
                raise ValidationError(
                    f"Unknown tenant {tenant!r}: hookcast has no API key and no webhook for it "
                    "(create a key first: hookcast keys create --tenant ...)."
                )
        _tenants.add((alias, prefix, tenant))


def _ring_after_commit(connection: Any, alias: str) -> None:
    """SQLite: ring the doorbell once this transaction has committed (once per transaction;
    Django drops the hook on rollback, a savepoint's rollback included)."""
    from django.db import transaction

    path = str(connection.settings_dict["NAME"])
    if path == ":memory:" or "mode=memory" in path:
        return
    # run_on_commit: Django's pending hooks of this transaction, (savepoints, hook, robust)
    if any(getattr(entry[1], "hookcast_path", None) == path for entry in connection.run_on_commit):
        return

    def ring() -> None:
        _ring(path)

    ring.hookcast_path = path  # type: ignore[attr-defined]
    transaction.on_commit(ring, using=alias)


def _ring(path: str) -> None:
    with _lock:
        doorbell = _doorbells.get(path)
        if doorbell is None:
            doorbell = _doorbells[path] = Doorbell(path)
        doorbell.ring(None)


def signal(
    event: str,
    primary_key: int,
    *,
    tenant: str | None = None,
    associate_id: int = 0,
    changes: Sequence[str] | Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    field_values: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    using: str | None = None,
) -> None:
    """Write an event into hookcast's outbox inside the current `transaction.atomic()` block
    of database `using` (default: HOOKCAST['DATABASE']): delivered once that block's
    transaction commits, never if it rolls back. `tenant` defaults to HOOKCAST['TENANT'];
    the other arguments as for `Hub.signal`. Raises hookcast.ValidationError (bad arguments,
    unknown tenant) or hookcast.OutboxError (not inside atomic(), no hookcast tables)."""
    from django.db import connections

    config = conf()
    alias = using or config.database
    connection = connections[alias]
    if not connection.in_atomic_block:
        raise OutboxError(
            "hookcast.contrib.django.signal needs a transaction: call it inside "
            f"transaction.atomic(using={alias!r}) (or with ATOMIC_REQUESTS), so that the event "
            "commits or rolls back with your changes."
        )
    tenant = tenant if tenant is not None else config.tenant
    if tenant is None:
        raise ValidationError("No tenant: pass tenant= or set HOOKCAST['TENANT'] in settings.py.")
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
    prefix = _prefix(connection, config.schema)
    _check(connection, alias, prefix, tenant)
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            event_outbox.dbapi_insert(prefix, postgres), event_outbox.row(item, time.time())
        )
    if not postgres:
        _ring_after_commit(connection, alias)
