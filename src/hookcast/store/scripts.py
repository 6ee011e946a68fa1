"""Every SQL statement for CRMScript scripts and per-tenant settings. Each function takes a
Connection inside a transaction (`Database.run` / `run_sync` provide one)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from .codec import from_json, new_id, to_datetime, to_json
from .schema import scripts, tenant_settings

# `#include "name";` as the interpreter finds it (textually, so a name in a comment counts
# too: fetching a script that is then not used is harmless, missing one is not).
INCLUDE_RE = re.compile(r"#include\s*(?:\"([^\"\n]*)\"|'([^'\n]*)')")
MAX_INCLUDED_SCRIPTS = 500  # texts fetched for one compile; the interpreter limits depth


@dataclass(frozen=True, slots=True)
class StoredScript:
    id: int
    tenant: str
    uid: str
    name: str
    description: str | None
    include_id: str
    source: str
    registered: datetime
    registered_associate_id: int
    updated: datetime
    updated_associate_id: int


def _script(row: Any) -> StoredScript:
    return StoredScript(
        id=row.id,
        tenant=row.tenant,
        uid=row.uid,
        name=row.name,
        description=row.description,
        include_id=row.include_id,
        source=row.source,
        registered=to_datetime(row.registered_at),
        registered_associate_id=row.registered_associate_id,
        updated=to_datetime(row.updated_at),
        updated_associate_id=row.updated_associate_id,
    )


# ----- scripts -----------------------------------------------------------------------------------


def insert_script(
    conn: Connection, tenant: str, associate_id: int, now: float, uid: str, fields: dict[str, Any]
) -> int:
    """`fields`: name, description, include_id, source."""
    result = conn.execute(
        insert(scripts).values(
            tenant=tenant,
            uid=uid,
            registered_at=now,
            registered_associate_id=associate_id,
            updated_at=now,
            updated_associate_id=associate_id,
            **fields,
        )
    )
    return new_id(result)


def get_script(conn: Connection, tenant: str, script_id: int) -> StoredScript | None:
    row = conn.execute(
        select(scripts).where(scripts.c.tenant == tenant, scripts.c.id == script_id)
    ).first()
    return None if row is None else _script(row)


def get_script_by_include_id(conn: Connection, tenant: str, include_id: str) -> StoredScript | None:
    row = conn.execute(
        select(scripts).where(scripts.c.tenant == tenant, scripts.c.include_id == include_id)
    ).first()
    return None if row is None else _script(row)


def list_scripts(
    conn: Connection, tenant: str, *, name: str | None = None, include_id: str | None = None
) -> list[StoredScript]:
    query = select(scripts).where(scripts.c.tenant == tenant).order_by(scripts.c.id)
    if name is not None:
        query = query.where(scripts.c.name == name)
    if include_id is not None:
        query = query.where(scripts.c.include_id == include_id)
    return [_script(r) for r in conn.execute(query)]


def include_id_owner(conn: Connection, tenant: str, include_id: str) -> int | None:
    """The id of the tenant's script with that IncludeId, if any."""
    return conn.execute(
        select(scripts.c.id).where(scripts.c.tenant == tenant, scripts.c.include_id == include_id)
    ).scalar()


def uid_taken(conn: Connection, tenant: str, uid: str) -> bool:
    return (
        conn.execute(
            select(scripts.c.id).where(scripts.c.tenant == tenant, scripts.c.uid == uid)
        ).first()
        is not None
    )


def update_script(
    conn: Connection,
    tenant: str,
    script_id: int,
    associate_id: int,
    now: float,
    fields: dict[str, Any],
) -> bool:
    result = conn.execute(
        update(scripts)
        .where(scripts.c.tenant == tenant, scripts.c.id == script_id)
        .values(updated_at=now, updated_associate_id=associate_id, **fields)
    )
    return result.rowcount == 1


def delete_script(conn: Connection, tenant: str, script_id: int) -> bool:
    result = conn.execute(
        delete(scripts).where(scripts.c.tenant == tenant, scripts.c.id == script_id)
    )
    return result.rowcount == 1


def include_names(source: str) -> list[str]:
    return [
        m.group(1) if m.group(1) is not None else m.group(2) for m in INCLUDE_RE.finditer(source)
    ]


def resolve_includes(
    conn: Connection,
    tenant: str,
    sources: Iterable[str],
    overrides: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """IncludeId -> source of every script of the tenant that `sources` reach through
    `#include`, transitively. `overrides` stand in for stored texts (a script being saved;
    None: that IncludeId counts as absent)."""
    known: dict[str, str | None] = dict(overrides or {})
    found: dict[str, str] = {}
    missing: set[str] = set()
    todo = list(sources)
    while todo and len(found) < MAX_INCLUDED_SCRIPTS:
        wanted = {n for text in todo for n in include_names(text)} - found.keys() - missing
        todo = []
        fetch = [n for n in wanted if n not in known]
        if fetch:
            rows = conn.execute(
                select(scripts.c.include_id, scripts.c.source).where(
                    scripts.c.tenant == tenant, scripts.c.include_id.in_(fetch)
                )
            )
            known.update({r.include_id: r.source for r in rows})
        for name in wanted:
            text = known.get(name)
            if text is None:
                missing.add(name)
            else:
                found[name] = text
                todo.append(text)
    return found


# ----- tenant settings ---------------------------------------------------------------------------


def get_http_allow_list(conn: Connection, tenant: str) -> list[str]:
    text = conn.execute(
        select(tenant_settings.c.script_http_hosts).where(tenant_settings.c.tenant == tenant)
    ).scalar()
    return list(from_json(text) or [])


def set_http_allow_list(
    conn: Connection, tenant: str, hosts: list[str], associate_id: int, now: float
) -> None:
    values = {
        "script_http_hosts": to_json(hosts),
        "updated_at": now,
        "updated_associate_id": associate_id,
    }
    changed = conn.execute(
        update(tenant_settings).where(tenant_settings.c.tenant == tenant).values(**values)
    ).rowcount
    if not changed:
        conn.execute(insert(tenant_settings).values(tenant=tenant, **values))


def script_run_context(
    conn: Connection, tenant: str, *, include_id: str | None = None, script_id: int | None = None
) -> tuple[StoredScript | None, dict[str, str], list[str]]:
    """Everything one run needs, read in one transaction: the script (by IncludeId or id),
    the texts it includes and the tenant's HTTP allow-list."""
    if include_id is not None:
        script = get_script_by_include_id(conn, tenant, include_id)
    else:
        script = get_script(conn, tenant, script_id or 0)
    if script is None:
        return None, {}, []
    return (
        script,
        resolve_includes(conn, tenant, [script.source]),
        get_http_allow_list(conn, tenant),
    )
