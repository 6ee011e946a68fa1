"""The named statements of statements.sql, and running them on a connection."""

from __future__ import annotations

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


def run(conn: Connection, name: str, params: Any = (), **parts: str) -> Any:
    """Run statement `name` in the caller's transaction, its `{part}`s filled in; a list
    of parameter tuples runs it once per tuple. The dialect's own form of the statement
    (`name@dialect`) runs instead where there is one. Returns the DB-API cursor."""
    dialect = dialect_of(conn)
    sql = STATEMENTS.get(f"{name}@{dialect.name}") or STATEMENTS[name]
    return dialect.execute(conn, sql.format(**parts) if parts else sql, params)
