"""Compile-time symbol tables: variables, functions, structs and scopes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .types import Ty

# frame layout: f[0] globals frame, f[1] run Context, f[2] return value, f[3] `this` (methods)
GLOBALS, CTX, RETVAL, THIS = 0, 1, 2, 3

# A frame is a plain list (slots of mixed types, see above); every compiled expression and
# statement is a closure `f → value` over it.
Frame = list[Any]
Fn = Callable[[Frame], Any]


def _not_compiled(f: Frame) -> Any:
    """FuncInfo.body until funcdef() has compiled it (a script never runs before that)."""
    raise RuntimeError("function body not compiled")


@dataclass(slots=True)
class VarInfo:
    ty: Ty
    slot: int
    is_global: bool
    readonly: bool = False


@dataclass(slots=True)
class FuncInfo:
    name: str
    params: tuple[Ty, ...]
    ret: Ty
    line: int
    struct: StructInfo | None = None  # set for methods
    nslots: int = 0
    # set by funcdef() once the body is compiled; calls compiled earlier (recursion) read it
    # at run time
    body: Fn = _not_compiled
    default: Fn | None = None  # value returned when falling off the end
    pad: tuple[None, ...] = ()


@dataclass(slots=True)
class StructInfo:
    name: str
    members: dict[str, tuple[int, Ty]] = field(
        default_factory=dict
    )  # name → (index in instance, type)
    order: list[tuple[str, Ty]] = field(default_factory=list)
    inits: list[Fn] = field(default_factory=list)  # per member: f → value
    methods: dict[str, list[FuncInfo]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<struct {self.name}>"


@dataclass(slots=True)
class FuncCtx:
    """State while compiling one function body (or the top level)."""

    is_top: bool
    scopes: list[dict[str, VarInfo]]
    nslots: int
    ret: Ty | None = None
    struct: StructInfo | None = None
    loops: int = 0
    in_catch: int = 0
