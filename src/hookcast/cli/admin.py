"""`hookcast migrate` (create or upgrade a database) and `hookcast settings` (every setting,
its environment variable, default and value)."""

from __future__ import annotations

from typing import Any

from .common import DbOption, JsonOption, console, open_database, print_rows, settings_for


def migrate(db: DbOption = None) -> None:
    """Create the database's tables, or bring them to the newest schema (safe to repeat).

    `serve` and `worker` do this on start; every other command needs a database that
    exists and says so when there is none at the URL.
    """
    from ..settings import mask_url
    from ..store import revision

    settings = settings_for(db)
    database = open_database(settings, create=True)
    try:
        with database.engine.connect() as conn:
            current = revision.state(conn).current
    finally:
        database.close()
    console().print(f"The database at {mask_url(settings.database_url)} is at schema {current}.")


def settings(as_json: JsonOption = False) -> None:
    """List every setting: its environment variable, its default and the value in effect
    (from the environment or the HOOKCAST_CONFIG file; secrets masked)."""
    from ..settings import Settings, env_name, masked

    current = settings_for()
    rows: list[dict[str, Any]] = []
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        rows.append(
            {
                "setting": name,
                "variable": env_name(name),
                "default": masked(name, default) if default is not None else None,
                "value": masked(name, getattr(current, name)),
            }
        )
    print_rows(
        rows,
        {
            "variable": lambda r: r["variable"],
            "default": lambda r: r["default"] if r["default"] is not None else "(unset)",
            "value": lambda r: r["value"],
        },
        as_json,
    )
