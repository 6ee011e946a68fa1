"""Vector: a list of Strings (§11.11)."""

from __future__ import annotations

from ..errors import IndexOutOfRange, ScriptRuntimeError
from ..runtime import Context
from ..values import str_to_int
from .registry import ctor, method, simple

V = "Vector"
ctor(V, "")(list)


def _check(v: list[str], i: int) -> None:
    if not 0 <= i < len(v):
        raise IndexOutOfRange(f"Vector index {i} outside 0..{len(v) - 1}")


@method(V, "pushBack", "String", "Void", ctx=True)
def _push(ctx: Context, v: list[str], s: str) -> None:
    ctx.check_array(len(v) + 1)
    ctx.store(s)
    v.append(s)


@method(V, "get", "Integer", "String")
def _get(v: list[str], i: int) -> str:
    _check(v, i)
    return v[i]


@method(V, "set", "Integer,String", "Void", ctx=True)
def _set(ctx: Context, v: list[str], i: int, s: str) -> None:
    _check(v, i)
    ctx.store(s)
    v[i] = s


@method(V, "removeAt", "Integer", "Void")
def _remove(v: list[str], i: int) -> None:
    _check(v, i)
    del v[i]


simple(V, "size", "", "Integer", len)
simple(V, "clear", "", "Void", lambda v: v.clear())
simple(V, "buildString", "String", "String", lambda v, d: d.join(v))


@method(V, "parseString", "String,String", "Void", ctx=True)
def _parse(ctx: Context, v: list[str], text: str, delim: str) -> None:
    if not delim:
        raise ScriptRuntimeError("parseString delimiter is empty")
    parts = text.split(delim)
    ctx.check_array(len(parts))
    v[:] = parts


simple(V, "toStringArray", "", "String[]", lambda v: list(v))
simple(V, "toIntegerArray", "", "Integer[]", lambda v: [str_to_int(s) for s in v])
