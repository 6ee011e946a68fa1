"""Map: String → String kept sorted by key, with an internal iterator (§11.6)."""

from __future__ import annotations

import json
from typing import NoReturn

from ..errors import ScriptRuntimeError
from ..runtime import Context
from ..values import fmt_float, str_to_float, str_to_int
from .registry import ctor, method, simple


class CMap:
    __slots__ = ("_keys", "d", "pos")

    def __init__(self, d: dict[str, str] | None = None) -> None:
        self.d: dict[str, str] = d if d is not None else {}
        self._keys: list[str] | None = None
        self.pos = 0

    @property
    def keys(self) -> list[str]:
        k = self._keys
        if k is None:
            k = self._keys = sorted(self.d)
        return k

    def insert(self, ctx: Context, k: str, v: str) -> CMap:
        if k not in self.d:
            ctx.check_array(len(self.d) + 1)
            self._keys = None
        ctx.store(v)
        self.d[k] = v
        self.pos = 0
        return self

    def remove(self, k: str) -> None:
        if k in self.d:
            del self.d[k]
            self._keys = None

    def clear(self) -> None:
        self.d.clear()
        self._keys = None
        self.pos = 0

    def key(self) -> str:
        keys = self.keys
        return keys[self.pos] if self.pos < len(keys) else ""

    def val(self) -> str:
        keys = self.keys
        return self.d[keys[self.pos]] if self.pos < len(keys) else ""

    def to_json(self) -> str:
        dumps = json.dumps
        return (
            "{"
            + ", ".join(
                f"{dumps(k, ensure_ascii=False)}: {dumps(self.d[k], ensure_ascii=False)}"
                for k in self.keys
            )
            + "}"
        )


M = "Map"
ctor(M, "")(lambda: CMap())


@ctor(M, "String", ctx=True)
def _from_text(ctx: Context, text: str) -> CMap:
    d: dict[str, str] = {}
    for line in text.split("\n"):
        k, sep, v = line.partition("=")
        if sep:
            d[k] = v
    ctx.check_array(len(d))
    return CMap(d)


method(M, "insert", "String,String", M, ctx=True)(lambda ctx, m, k, v: m.insert(ctx, k, v))
simple(M, "get", "String", "String", lambda m, k: m.d.get(k, ""))
simple(M, "exists", "String", "Bool", lambda m, k: k in m.d)
simple(M, "size", "", "Integer", lambda m: len(m.d))
simple(M, "remove", "String", "Void", lambda m, k: m.remove(k))
simple(M, "clear", "", "Void", lambda m: m.clear())


def _first(m: CMap) -> bool:
    m.pos = 0
    return len(m.d) > 0


def _next(m: CMap) -> bool:
    if m.pos < len(m.d):
        m.pos += 1
    return m.pos < len(m.d)


simple(M, "first", "", "Bool", _first)
simple(M, "next", "", "Bool", _next)
simple(M, "eof", "", "Bool", lambda m: m.pos >= len(m.d))
simple(M, "getKey", "", "String", lambda m: m.key())
simple(M, "getVal", "", "String", lambda m: m.val())


@method(M, "increaseValueForKey", "String,Integer", "Void", ctx=True)
def _inc_int(ctx: Context, m: CMap, k: str, n: int) -> None:
    cur = str_to_int(m.d.get(k, ""))
    m.insert(ctx, k, str(cur + n))


@method(M, "increaseValueForKey", "String,Float", "Void", ctx=True)
def _inc_float(ctx: Context, m: CMap, k: str, x: float) -> None:
    cur = str_to_float(m.d.get(k, ""))
    m.insert(ctx, k, fmt_float(cur + x, 6))


simple(M, "toJson", "", "String", lambda m: m.to_json())


@method(M, "fromJson", "String", "Void", ctx=True)
def _from_json(ctx: Context, m: CMap, text: str) -> None:
    if not text.strip():  # like parseJSON(""): nothing to insert (§11.7)
        return
    try:
        data = json.loads(text, parse_float=str, parse_int=str, parse_constant=_bad_constant)
    except (ValueError, RecursionError) as e:
        raise ScriptRuntimeError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ScriptRuntimeError("invalid JSON: top level is not an object")
    for k, v in data.items():
        if isinstance(v, bool):
            m.insert(ctx, k, "true" if v else "false")
        elif isinstance(v, str):
            m.insert(ctx, k, v)


def _bad_constant(name: str) -> NoReturn:
    raise ValueError(f"unexpected {name}")
