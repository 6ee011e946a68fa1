"""Built-in struct methods: toJson(JSONBuilder) and fromXMLNode(XMLNode) (§8)."""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

from .builtins.jsonbuilder import JSONBuilder
from .builtins.xml import XNode
from .runtime import Context
from .symbols import Frame, StructInfo
from .types import Ty
from .values import json_float, str_to_float, str_to_int

# A struct instance is a list: [StructInfo, member0, member1, ...] (values.py).
Instance = list[Any]


def struct_to_json(ctx: Context, inst: Instance, jb: JSONBuilder, key: str = "") -> None:
    info = inst[0]
    jb.push(ctx, key, True)
    for i, (name, ty) in enumerate(info.order):
        _value_to_json(ctx, jb, name, ty, inst[i + 1])
    jb.pop()


def _value_to_json(ctx: Context, jb: JSONBuilder, key: str, ty: Ty, v: Any) -> None:
    if ty.dims:
        el = ty.elem()
        if not _json_kind(el):
            return
        jb.push(ctx, key, False)
        for x in v:
            _value_to_json(ctx, jb, "", el, x)
        jb.pop()
        return
    kind = _json_kind(ty)
    if kind == "Integer":
        jb.add(ctx, key, str(int(v)))
    elif kind == "Float":
        jb.add(ctx, key, json_float(v))
    elif kind == "Bool":
        jb.add(ctx, key, "true" if v else "false")
    elif kind == "String":
        jb.add(ctx, key, encode_basestring(v))
    elif kind == "struct":
        struct_to_json(ctx, v, jb, key)


def _json_kind(ty: Ty) -> str | None:
    if ty.dims:
        return _json_kind(ty.elem()) and "array"
    if ty.name in ("Integer", "Float", "Bool", "String"):
        return ty.name
    if ty.name in ("Long", "Byte"):
        return "Integer"
    if ty.name[0:1] and ty.name not in (
        "Date",
        "Time",
        "DateTime",
        "Map",
        "XMLNode",
        "JSONBuilder",
        "HTTP",
        "Vector",
        "TimeZone",
        "Void",
    ):
        return "struct"
    return None


def struct_from_xml(f: Frame, inst: Instance, node: XNode, structs: dict[str, StructInfo]) -> None:
    info = inst[0]
    children = node.children
    for i, (name, ty) in enumerate(info.order):
        child = next((c for c in children if c.name == name), None)
        if child is None:
            continue
        cur = inst[i + 1]
        if ty.dims:
            el = ty.elem()
            items: list[Any] = []
            for c in child.children:
                v = _convert(f, el, c, None, structs)
                if v is _SKIP:
                    break
                items.append(v)
            else:
                if isinstance(cur, bytearray):
                    cur[:] = bytearray(x & 0xFF for x in items)
                else:
                    cur[:] = items
            continue
        v = _convert(f, ty, child, cur, structs)
        if v is not _SKIP:
            inst[i + 1] = v


_SKIP = object()


def _convert(f: Frame, ty: Ty, node: XNode, cur: Any, structs: dict[str, StructInfo]) -> Any:
    if ty.dims:
        return _SKIP
    name = ty.name
    text = node.text
    if name == "String":
        return "" if node.params.get("type") in ("object", "array") else text
    if name in ("Integer", "Long", "Byte"):
        return str_to_int(text)
    if name == "Float":
        return str_to_float(text)
    if name == "Bool":
        return text.lower() in ("true", "1")
    info = structs.get(name)
    if info is None:
        return _SKIP
    if cur is None:
        cur = [info, *[i(f) for i in info.inits]]
    struct_from_xml(f, cur, node, structs)
    return cur
