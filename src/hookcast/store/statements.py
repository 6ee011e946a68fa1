"""The named statements of statements.sql, and running them on a connection."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from .dialect import dialect_of

_HEADER = re.compile(r"^-- ([a-z_]+(?:@[a-z]+)?)( \(rows as JSON\))? --$")


def _load(path: Path) -> tuple[dict[str, str], frozenset[str]]:
    statements: dict[str, list[str]] = {}
    json_rows = set()
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if header := _HEADER.match(line):
            current = statements.setdefault(header.group(1), [])
            if header.group(2):
                json_rows.add(header.group(1))
        elif current is not None and line.strip() and not line.startswith("--"):
            current.append(line.strip())
    return {name: " ".join(lines) for name, lines in statements.items()}, frozenset(json_rows)


STATEMENTS, _JSON_ROWS = _load(Path(__file__).with_name("statements.sql"))


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


@functools.cache
def json_rows_for(dialect: str) -> frozenset[str]:
    """The statements `dialect` runs with all their rows as one JSON parameter."""
    own = f"@{dialect}"
    return frozenset(name.removesuffix(own) for name in _JSON_ROWS if name.endswith(own))


def json_rows(rows: list[Any]) -> str:
    """The parameter of a `(rows as JSON)` form: the rows (tuples, NamedTuples) as one JSON
    array of arrays."""
    return orjson.dumps(rows, default=tuple).decode()


def run(conn: Connection, name: str, params: Any = (), **parts: str) -> Any:
    """Run statement `name`, in the dialect's own form where it has one, in the caller's
    transaction, its `{part}`s filled in; a list of parameter tuples runs it once per
    tuple (or once for all, as JSON, in a `(rows as JSON)` form). Returns the DB-API
    cursor."""
    dialect = dialect_of(conn)
    sql = statements_for(dialect.name)[name]
    if isinstance(params, list) and name in json_rows_for(dialect.name):
        params = (json_rows(params),)
    return dialect.execute(conn, sql.format(**parts) if parts else sql, params)
