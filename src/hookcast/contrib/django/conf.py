"""hookcast's settings in a Django project: the `HOOKCAST` dict of settings.py.

HOOKCAST = {
    "TENANT": "Cust1234",      # the tenant of signals that name none (and of model events)
    "DATABASE": "default",     # the alias whose database holds hookcast's tables
    "SCHEMA": None,            # PostgreSQL: hookcast's tables in a schema of their own
    "MODELS": {                # model events (see models.py), or call register() yourself
        "crm.Contact": {"event": "contact", "fields": ["name", "email"]},
    },
    "SETTINGS": {"allow_targets": ["10.0.0.0/8"]},  # for hookcast_serve / hookcast_worker
}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from ...errors import OutboxError

KNOWN = {"TENANT", "DATABASE", "SCHEMA", "MODELS", "SETTINGS"}


@dataclass(frozen=True)
class Conf:
    tenant: str | None = None
    database: str = "default"
    schema: str | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def conf() -> Conf:
    from django.conf import settings

    raw = getattr(settings, "HOOKCAST", {}) or {}
    unknown = set(raw) - KNOWN
    if unknown:
        raise OutboxError(
            f"settings.HOOKCAST has unknown keys {sorted(unknown)}; known: {sorted(KNOWN)}"
        )
    return Conf(
        tenant=raw.get("TENANT"),
        database=raw.get("DATABASE", "default"),
        schema=raw.get("SCHEMA"),
        models=dict(raw.get("MODELS", {})),
        settings=dict(raw.get("SETTINGS", {})),
    )


def database_url(alias: str | None = None, *, schema: str | None = None) -> str:
    """The SQLAlchemy URL of a Django database (for hookcast's processes and migrations);
    with `schema`, one whose connections look there first (PostgreSQL's search_path)."""
    from django.db import connections

    config = conf()
    connection = connections[alias or config.database]
    vendor = connection.vendor
    params = connection.settings_dict
    if vendor == "sqlite":
        return URL.create("sqlite", database=str(params["NAME"])).render_as_string()
    if vendor != "postgresql":
        raise OutboxError(f"hookcast works on SQLite and PostgreSQL, not {vendor}.")
    query = {}
    schema = schema if schema is not None else config.schema
    if schema:
        query["options"] = f"-csearch_path={schema}"
    return URL.create(
        "postgresql+psycopg",
        username=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=int(params["PORT"]) if params.get("PORT") else None,
        database=params["NAME"],
        query=query,
    ).render_as_string(hide_password=False)
