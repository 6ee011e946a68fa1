"""How values are kept in columns: JSON as text, times as epoch seconds."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, overload

import orjson
from sqlalchemy import CursorResult


def to_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def from_json(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def nul_free(text: str | None) -> str | None:
    """Text as a column keeps it: PostgreSQL's text cannot hold NUL (a receiver's answer or
    a script's output may), so on both backends each becomes U+FFFD."""
    return text.replace("\0", "\ufffd") if text and "\0" in text else text


@functools.lru_cache(maxsize=4096)
def shared_json(raw: str | None) -> Any:
    """A webhook's Headers or Properties, parsed once rather than once per delivery (the
    result is shared, so never modified)."""
    return None if raw is None else orjson.loads(raw)


@overload
def to_datetime(epoch: float) -> datetime: ...
@overload
def to_datetime(epoch: None) -> None: ...
def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT just gave its row."""
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])
