"""JSONBuilder (§11.8): compact JSON text built level by level."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

from ..errors import ScriptRuntimeError
from ..runtime import Context
from ..values import json_float
from .registry import ctor, method, simple


class JSONBuilder:
    __slots__ = ("has_root", "parts", "pretty", "size", "stack")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.stack: list[list[int]] = []  # [is_object, count]
        self.has_root = False
        self.pretty = 0
        self.size = 0

    def _key(self, ctx: Context, key: str) -> None:
        if not self.stack:
            if self.has_root:
                raise ScriptRuntimeError("JSONBuilder: the document already has a root value")
            if key != "":
                raise ScriptRuntimeError("JSONBuilder: a name is not allowed at the root")
            self.has_root = True
            return
        top = self.stack[-1]
        if top[0]:
            if key == "":
                raise ScriptRuntimeError("JSONBuilder: a member key is required inside an object")
            self._put(ctx, ("," if top[1] else "") + encode_basestring(key) + ":")
        else:
            if key != "":
                raise ScriptRuntimeError("JSONBuilder: a key is not allowed inside an array")
            if top[1]:
                self._put(ctx, ",")
        top[1] += 1

    def _put(self, ctx: Context, s: str) -> None:
        self.size += len(s)
        if self.size > ctx.max_string:
            raise ctx.string_too_long(self.size)
        self.parts.append(s)

    def push(self, ctx: Context, key: str, is_object: bool) -> None:
        self._key(ctx, key)
        self._put(ctx, "{" if is_object else "[")
        self.stack.append([is_object, 0])

    def add(self, ctx: Context, key: str, text: str) -> None:
        self._key(ctx, key)
        self._put(ctx, text)

    def pop(self) -> None:
        if not self.stack:
            raise ScriptRuntimeError("JSONBuilder: popLevel with no open level")
        is_object, _ = self.stack.pop()
        self.parts.append("}" if is_object else "]")

    def finalize(self) -> None:
        while self.stack:
            self.pop()

    def text(self) -> str:
        s = "".join(self.parts) + "".join("}" if o else "]" for o, _ in reversed(self.stack))
        if self.pretty and s:
            data = json.loads(s, object_pairs_hook=_Ordered, parse_float=_Raw, parse_int=_Raw)
            s = _pretty(data, self.pretty)
        return s


class _Ordered(list[tuple[str, Any]]):
    pass


class _Raw(str):
    pass


def _pretty(v: Any, indent: int, level: int = 0) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(v, _Ordered):
        if not v:
            return "{}"
        items = [f"{pad}{encode_basestring(k)}: {_pretty(x, indent, level + 1)}" for k, x in v]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(v, list):
        if not v:
            return "[]"
        return "[\n" + ",\n".join(pad + _pretty(x, indent, level + 1) for x in v) + "\n" + end + "]"
    if isinstance(v, _Raw):
        return str(v)
    if isinstance(v, str):
        return encode_basestring(v)
    if v is None:
        return "null"
    return "true" if v else "false"


J = "JSONBuilder"
ctor(J, "")(lambda: JSONBuilder())
method(J, "pushObject", "String", "Void", ctx=True)(lambda ctx, b, k: b.push(ctx, k, True))
method(J, "pushArray", "String", "Void", ctx=True)(lambda ctx, b, k: b.push(ctx, k, False))
method(J, "addString", "String,String", "Void", ctx=True)(
    lambda ctx, b, k, v: b.add(ctx, k, encode_basestring(v))
)
method(J, "addInteger", "String,Integer", "Void", ctx=True)(
    lambda ctx, b, k, v: b.add(ctx, k, str(int(v)))
)
method(J, "addFloat", "String,Float", "Void", ctx=True)(
    lambda ctx, b, k, v: b.add(ctx, k, json_float(v))
)
method(J, "addBoolean", "String,Bool", "Void", ctx=True)(
    lambda ctx, b, k, v: b.add(ctx, k, "true" if v else "false")
)
method(J, "addNull", "String", "Void", ctx=True)(lambda ctx, b, k: b.add(ctx, k, "null"))
simple(J, "popLevel", "", "Void", lambda b: b.pop())
simple(J, "finalize", "", "Void", lambda b: b.finalize())
simple(J, "getString", "", "String", lambda b: b.text())
simple(
    J, "setPrettyPrint", "Integer", "Void", lambda b, n: setattr(b, "pretty", max(0, min(n, 16)))
)
