"""The named statements of statements.sql, and running them on a connection."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from .dialect import dialect_of

_HEADER = re.compile(r"^-- ([a-z_]+(?:@[a-z]+)?) --$")


def _load(path: Path) -> dict[str, str]:
    statements: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if header := _HEADER.match(line):
            current = statements.setdefault(header.group(1), [])
        elif current is not None and line.strip() and not line.startswith("--"):
            current.append(line.strip())
    return {name: " ".join(lines) for name, lines in statements.items()}


STATEMENTS = _load(Path(__file__).with_name("statements.sql"))


def marks(count: int) -> str:
    return ",".join("?" * count)


@functools.cache
def statements_for(dialect: str) -> dict[str, str]:
    """The statements as `dialect` runs them: its own forms (`name@dialect`) in place of
    the shared ones."""
    own = f"@{dialect}"
    return {
        name: STATEMENTS.get(name + own, sql) for name, sql in STATEMENTS.items() if "@" not in name
    }


def run(conn: Connection, name: str, params: Any = (), **parts: str) -> Any:
    """Run statement `name`, in the dialect's own form where it has one, in the caller's
    transaction, its `{part}`s filled in; a list of parameter tuples runs it once per
    tuple. Returns the DB-API cursor."""
    dialect = dialect_of(conn)
    sql = statements_for(dialect.name)[name]
    return dialect.execute(conn, sql.format(**parts) if parts else sql, params)
