"""Default values of declared variables (§3), as factories `f → value`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .builtins.dates import HOST_TIME_ZONE, now
from .builtins.http import HttpClient
from .builtins.jsonbuilder import JSONBuilder
from .builtins.maps import CMap
from .builtins.xml import XNode
from .runtime import Context
from .symbols import Fn, Frame, StructInfo
from .types import Ty
from .values import NULL_FLOAT, NULL_INT, NULL_STR

_CONST: dict[str, object] = {
    "Integer": NULL_INT,
    "Float": NULL_FLOAT,
    "String": NULL_STR,
    "Bool": False,
    "Long": NULL_INT,
    "Byte": 0,
}
_FRESH: dict[str, Callable[[], Any]] = {
    "Date": lambda: now().date(),
    "Time": lambda: now().time(),
    "DateTime": now,
    "Map": CMap,
    "XMLNode": XNode,
    "JSONBuilder": JSONBuilder,
    "HTTP": HttpClient,
    "Vector": list,
    "TimeZone": lambda: HOST_TIME_ZONE,
}


def default_factory(ty: Ty, structs: dict[str, StructInfo]) -> Fn:
    if ty.dims:
        if ty.dims == 1 and ty.name == "Byte":
            return lambda f: bytearray()
        return lambda f: []
    if ty.name in _CONST:
        v = _CONST[ty.name]
        return lambda f: v
    if ty.name in _FRESH:
        mk = _FRESH[ty.name]
        return lambda f: mk()
    info = structs[ty.name]
    inits = info.inits  # filled while the struct is compiled; read at run time

    def make_struct(f: Frame) -> list[Any]:
        return [info, *[i(f) for i in inits]]

    return make_struct


def sized_factory(
    ty: Ty,
    dim_fns: list[Fn],
    structs: dict[str, StructInfo],
    ctx_check: Callable[[Context, list[int]], None],
) -> Fn:
    """`T[n][m] x;`: n, m evaluated at the declaration."""
    leaf = default_factory(Ty(ty.name, 0), structs)
    byte_leaf = ty.name == "Byte"

    def build(f: Frame, sizes: list[int], level: int) -> list[Any] | bytearray:
        n = sizes[level]
        if level == len(sizes) - 1:
            if byte_leaf:
                return bytearray(n)
            return [leaf(f) for _ in range(n)]
        return [build(f, sizes, level + 1) for _ in range(n)]

    def make(f: Frame) -> list[Any] | bytearray:
        sizes = [d(f) for d in dim_fns]
        ctx_check(f[1], sizes)
        return build(f, sizes, 0)

    return make
