"""Every SQL statement of hookcast. Each function takes a Connection inside a transaction
(`Database.run` / `run_sync` provide one) and speaks in model objects, not rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.engine import Row

from ..model import ApiKey, NotifyVia, NotifyWhen, Principal, State, Usage, Webhook
from ..rights import DEFAULT_ROLE, Role
from .codec import from_json, new_id, to_datetime, to_json
from .rows import options_of
from .schema import api_keys, associates, notifications, webhook_events, webhooks

# ----- associates and API keys -----------------------------------------------------------------


def upsert_associate(
    conn: Connection, tenant: str, associate_id: int, name: str, full_name: str
) -> None:
    exists = conn.execute(
        select(associates.c.name).where(
            associates.c.tenant == tenant, associates.c.associate_id == associate_id
        )
    ).first()
    values = {"name": name, "full_name": full_name}
    if exists is None:
        conn.execute(insert(associates).values(tenant=tenant, associate_id=associate_id, **values))
    elif name:
        conn.execute(
            update(associates)
            .where(associates.c.tenant == tenant, associates.c.associate_id == associate_id)
            .values(**values)
        )


def insert_key(
    conn: Connection,
    *,
    tenant: str,
    associate_id: int,
    name: str,
    prefix: str,
    key_hash: str,
    now: float,
    role: Role = DEFAULT_ROLE,
) -> int:
    result = conn.execute(
        insert(api_keys).values(
            tenant=tenant,
            associate_id=associate_id,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            created_at=now,
            role=role.value,
        )
    )
    return new_id(result)


def principal_for_key(conn: Connection, key_hash: str) -> Principal | None:
    row = conn.execute(
        select(
            api_keys.c.id,
            api_keys.c.tenant,
            api_keys.c.associate_id,
            api_keys.c.role,
            associates.c.name,
            associates.c.full_name,
        )
        .select_from(
            api_keys.outerjoin(
                associates,
                and_(
                    associates.c.tenant == api_keys.c.tenant,
                    associates.c.associate_id == api_keys.c.associate_id,
                ),
            )
        )
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return Principal(
        tenant=row.tenant,
        associate_id=row.associate_id,
        name=row.name or "",
        full_name=row.full_name or "",
        key_id=row.id,
        role=Role(row.role),
    )


def list_keys(conn: Connection, tenant: str | None = None) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.id)
    if tenant is not None:
        query = query.where(api_keys.c.tenant == tenant)
    return [
        ApiKey(
            id=r.id,
            tenant=r.tenant,
            associate_id=r.associate_id,
            name=r.name,
            prefix=r.prefix,
            created=to_datetime(r.created_at),
            revoked=to_datetime(r.revoked_at),
            role=Role(r.role),
        )
        for r in conn.execute(query)
    ]


def revoke_key(conn: Connection, key_id: int, now: float) -> bool:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


def count_keys(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())


# ----- webhooks ----------------------------------------------------------------------------------

_registered = associates.alias("registered_by")
_updated = associates.alias("updated_by")
_WEBHOOK_QUERY = select(
    webhooks,
    _registered.c.name.label("r_name"),
    _registered.c.full_name.label("r_full"),
    _updated.c.name.label("u_name"),
    _updated.c.full_name.label("u_full"),
).select_from(
    webhooks.outerjoin(
        _registered,
        and_(
            _registered.c.tenant == webhooks.c.tenant,
            _registered.c.associate_id == webhooks.c.registered_associate_id,
        ),
    ).outerjoin(
        _updated,
        and_(
            _updated.c.tenant == webhooks.c.tenant,
            _updated.c.associate_id == webhooks.c.updated_associate_id,
        ),
    )
)


def _associate(associate_id: int, name: str | None, full: str | None) -> dict[str, Any]:
    return {
        "AssociateId": associate_id,
        "Name": name or "",
        "FullName": full or name or "",
        "Type": "Employee",
    }


def _webhook(row: Row[Any]) -> Webhook:
    return Webhook(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        events=from_json(row.events),
        target_url=row.target_url,
        secret=row.secret,
        state=State(row.state),
        type=row.type,
        headers=from_json(row.headers),
        properties=from_json(row.properties),
        error_emails=from_json(row.error_emails),
        error_associates=from_json(row.error_associates),
        description=row.description,
        notify_via=NotifyVia(row.notify_via),
        notify_when=NotifyWhen(row.notify_when),
        registered=to_datetime(row.registered_at),
        registered_associate_id=row.registered_associate_id,
        updated=to_datetime(row.updated_at),
        updated_associate_id=row.updated_associate_id,
        registered_associate=_associate(row.registered_associate_id, row.r_name, row.r_full),
        updated_associate=_associate(row.updated_associate_id, row.u_name, row.u_full),
        usage=_usage(row),
        options=options_of(
            row.ordering, row.coalesce_ms, row.auto_recover, row.max_per_second, row.max_in_flight
        ),
    )


def _webhook_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Model-level field values to column values."""
    values = dict(fields)
    for key in ("events", "headers", "properties", "error_emails", "error_associates"):
        if key in values:
            values[key] = to_json(values[key])
    for key in ("state", "notify_via", "notify_when", "ordering", "auto_recover"):
        if key in values:
            values[key] = int(values[key])
    return values


def _index_events(conn: Connection, tenant: str, webhook_id: int, names: Iterable[str]) -> None:
    conn.execute(delete(webhook_events).where(webhook_events.c.webhook_id == webhook_id))
    rows = [{"tenant": tenant, "event": n, "webhook_id": webhook_id} for n in names]
    if rows:
        conn.execute(insert(webhook_events), rows)


def insert_webhook(
    conn: Connection, tenant: str, associate_id: int, now: float, fields: dict[str, Any]
) -> int:
    result = conn.execute(
        insert(webhooks).values(
            tenant=tenant,
            registered_at=now,
            registered_associate_id=associate_id,
            updated_at=now,
            updated_associate_id=associate_id,
            **_webhook_values(fields),
        )
    )
    webhook_id = new_id(result)
    _index_events(conn, tenant, webhook_id, fields["events"])
    return webhook_id


def get_webhook(conn: Connection, tenant: str, webhook_id: int) -> Webhook | None:
    row = conn.execute(
        _WEBHOOK_QUERY.where(webhooks.c.tenant == tenant, webhooks.c.id == webhook_id)
    ).first()
    return None if row is None else _webhook(row)


def list_webhooks(
    conn: Connection,
    tenant: str,
    *,
    name: str | None = None,
    event: str | None = None,
    states: Sequence[State] | None = None,
) -> list[Webhook]:
    query = _WEBHOOK_QUERY.where(webhooks.c.tenant == tenant).order_by(webhooks.c.id)
    if name:
        query = query.where(webhooks.c.name == name)
    if event:
        query = query.where(
            webhooks.c.id.in_(
                select(webhook_events.c.webhook_id).where(
                    webhook_events.c.tenant == tenant, webhook_events.c.event == event.lower()
                )
            )
        )
    if states:
        query = query.where(webhooks.c.state.in_([int(s) for s in states]))
    return [_webhook(r) for r in conn.execute(query)]


def list_all_webhooks(conn: Connection) -> list[Webhook]:
    return [_webhook(r) for r in conn.execute(_WEBHOOK_QUERY.order_by(webhooks.c.id))]


def update_webhook(
    conn: Connection,
    tenant: str,
    webhook_id: int,
    associate_id: int,
    now: float,
    fields: dict[str, Any],
    *,
    reset_errors: bool = False,
) -> bool:
    values = _webhook_values(fields)
    if reset_errors:
        values["consecutive_errors"] = 0
    result = conn.execute(
        update(webhooks)
        .where(webhooks.c.tenant == tenant, webhooks.c.id == webhook_id)
        .values(updated_at=now, updated_associate_id=associate_id, **values)
    )
    if result.rowcount != 1:
        return False
    if "events" in fields:
        _index_events(conn, tenant, webhook_id, fields["events"])
    return True


def delete_webhook(conn: Connection, tenant: str, webhook_id: int) -> bool:
    # Deliveries, attempts and the event index go with it (ON DELETE CASCADE).
    result = conn.execute(
        delete(webhooks).where(webhooks.c.tenant == tenant, webhooks.c.id == webhook_id)
    )
    return result.rowcount == 1


def get_usage(conn: Connection, tenant: str, webhook_id: int) -> Usage | None:
    row = conn.execute(
        select(
            webhooks.c.total_calls,
            webhooks.c.total_errors,
            webhooks.c.consecutive_errors,
            webhooks.c.last_error,
            webhooks.c.last_error_at,
            webhooks.c.last_success_at,
        ).where(webhooks.c.tenant == tenant, webhooks.c.id == webhook_id)
    ).first()
    return None if row is None else _usage(row)


def _usage(row: Any) -> Usage:
    return Usage(
        total_calls=row.total_calls,
        total_errors=row.total_errors,
        consecutive_errors=row.consecutive_errors,
        last_error=row.last_error,
        last_error_at=to_datetime(row.last_error_at),
        last_success_at=to_datetime(row.last_success_at),
    )


# ----- InApp notifications ---------------------------------------------------------------------


def list_notifications(
    conn: Connection, tenant: str, associate_id: int | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """A tenant's InApp notifications (for one associate, if given), newest first."""
    where = [notifications.c.tenant == tenant]
    if associate_id is not None:
        where.append(notifications.c.associate_id == associate_id)
    total = conn.execute(select(func.count()).select_from(notifications).where(*where)).scalar_one()
    rows = conn.execute(
        select(notifications)
        .where(*where)
        .order_by(notifications.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).mappings()
    return int(total), [dict(row) for row in rows]
