"""XMLNode trees and parseJSON (§11.7)."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, NoReturn

from ..errors import ScriptRuntimeError
from ..runtime import Context
from ..values import NULL_STR
from .registry import ctor, func, method, simple


class XNode:
    __slots__ = ("children", "name", "params", "text")

    def __init__(
        self, name: str = "", text: str = "", params: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.text = text
        self.params: dict[str, str] = params if params is not None else {}
        self.children: list[XNode] = []


class _Num(str):
    """A JSON number, kept exactly as written."""


def _bad_constant(name: str) -> NoReturn:
    raise ValueError(f"unexpected {name}")


def _pairs(pairs: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    return ("obj", pairs)


def _build(name: str, v: Any) -> XNode:
    if isinstance(v, tuple):
        n = XNode(name, "", {"type": "object"})
        n.children = [_build(k, x) for k, x in v[1]]
    elif isinstance(v, list):
        n = XNode(name, "", {"type": "array"})
        n.children = [_build("item", x) for x in v]
    elif isinstance(v, _Num):
        n = XNode(name, str(v), {"type": "number"})
    elif isinstance(v, str):
        n = XNode(name, v, {"type": "string"})
    elif v is True or v is False:
        n = XNode(name, "true" if v else "false", {"type": "bool"})
    else:
        n = XNode(name, "null", {"type": "null"})
    return n


def parse_json(text: str) -> XNode:
    if not text.strip():  # an unanswered request's empty body (§11.7)
        return XNode("root")
    try:
        data = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_Num,
            parse_int=_Num,
            parse_constant=_bad_constant,
        )
        return _build("root", data)
    except RecursionError:
        raise ScriptRuntimeError("invalid JSON: nested too deeply") from None
    except ValueError as e:
        raise ScriptRuntimeError(f"invalid JSON: {e}") from None


func("parseJSON", "String", "XMLNode")(parse_json)
func("parseJSON2", "String", "XMLNode")(parse_json)


def _child(node: XNode, seg: str) -> XNode | None:
    if seg.isdigit() and seg.isascii():
        i = int(seg)
        return node.children[i] if i < len(node.children) else None
    for c in node.children:
        if c.name == seg:
            return c
    return None


def node_from_path(node: XNode, path: str) -> XNode | None:
    if path == "":
        return node
    for seg in path.split("."):
        child = _child(node, seg)
        if child is None:
            return None
        node = child
    return node


def _text(node: XNode) -> str:
    return "" if node.params.get("type") in ("object", "array") else node.text


@method("XMLNode", "getValueFromPath", "String", "String")
def _value_from_path(node: XNode, path: str) -> str:
    n = node_from_path(node, path)
    return NULL_STR if n is None else _text(n)


@method("XMLNode", "getNodeFromPath", "String", "XMLNode")
def _node_from_path(node: XNode, path: str) -> XNode:
    n = node_from_path(node, path)
    return XNode() if n is None else n


X = "XMLNode"
ctor(X, "")(lambda: XNode())
ctor(X, "String")(lambda name: XNode(name))
simple(X, "getChildren", "", "XMLNode[]", lambda n: list(n.children))
simple(X, "getName", "", "String", lambda n: n.name)
simple(X, "getText", "", "String", lambda n: n.text)
simple(X, "getParameter", "String", "String", lambda n, k: n.params.get(k, ""))


def _set(attr: str) -> Callable[[Context, XNode, str], None]:
    def setter(ctx: Context, n: XNode, v: str) -> None:
        ctx.store(v)
        setattr(n, attr, v)

    return setter


method(X, "setName", "String", "Void", ctx=True)(_set("name"))
method(X, "setText", "String", "Void", ctx=True)(_set("text"))


@method(X, "setParameter", "String,String", "Void", ctx=True)
def _set_param(ctx: Context, n: XNode, k: str, v: str) -> None:
    ctx.store(v)
    n.params[k] = v


@method(X, "addChild", "XMLNode", "Void", ctx=True)
def _add_child(ctx: Context, n: XNode, c: XNode) -> None:
    if c is n:
        raise ScriptRuntimeError("a node cannot be its own child")
    ctx.check_array(len(n.children) + 1)
    ctx.store(c)
    n.children.append(c)


@method(X, "setChildren", "XMLNode[]", "Void")
def _set_children(n: XNode, cs: list[XNode]) -> None:
    if any(c is n for c in cs):
        raise ScriptRuntimeError("a node cannot be its own child")
    n.children = list(cs)


def to_json(node: XNode, indent: int, ctx: Context, top: bool = True) -> str:
    parts: list[str] = []
    size = [0, 0]  # nodes, characters
    _json(node, max(0, min(indent, 16)), 0, parts, set(), ctx, size)
    return "".join(parts)


def _put(out: list[str], size: list[int], ctx: Context, text: str) -> None:
    size[1] += len(text)
    if size[1] > ctx.max_string:  # before a shared subtree multiplies the text
        raise ctx.string_too_long(size[1])
    out.append(text)


def _json(
    node: XNode,
    indent: int,
    level: int,
    out: list[str],
    seen: set[int],
    ctx: Context,
    size: list[int],
) -> None:
    if id(node) in seen:
        raise ScriptRuntimeError("cyclic XMLNode tree")
    size[0] += 1
    if size[0] > ctx.max_array:
        ctx.check_array(size[0])

    t = node.params.get("type")
    if t is None:
        t = "object" if node.children else "string"
    nl = "\n" + " " * (indent * (level + 1)) if indent else ""
    end = "\n" + " " * (indent * level) if indent else ""
    sep = ": " if indent else ":"
    if t in ("object", "array"):
        seen.add(id(node))
        _put(out, size, ctx, "{" if t == "object" else "[")
        for i, c in enumerate(node.children):
            if i:
                _put(out, size, ctx, ",")
            _put(out, size, ctx, nl)
            if t == "object":
                _put(out, size, ctx, encode_basestring(c.name) + sep)
            _json(c, indent, level + 1, out, seen, ctx, size)
        if node.children:
            _put(out, size, ctx, end)
        _put(out, size, ctx, "}" if t == "object" else "]")
        seen.discard(id(node))
    elif t in ("number", "bool", "null"):
        _put(out, size, ctx, node.text or "null")
    else:
        _put(out, size, ctx, encode_basestring(node.text))


method(X, "toJSON", "Integer", "String", ctx=True)(
    lambda ctx, n, ind: ctx.check_string(to_json(n, ind, ctx))
)


def _emit(out: list[str], text: str, size: list[int], ctx: Context) -> None:
    # Counted as it is built: a tree that shares nodes (each level adding the previous node
    # twice) is small in memory and exponential as text, so the limit must trip while the
    # text grows, not after it has been joined.
    size[0] += len(text)
    if size[0] > ctx.max_string:
        raise ctx.string_too_long(size[0])
    out.append(text)


def _xml(
    node: XNode,
    indent: int,
    level: int,
    out: list[str],
    seen: set[int],
    ctx: Context,
    size: list[int],
) -> None:
    if id(node) in seen:
        raise ScriptRuntimeError("cyclic XMLNode tree")
    from xml.sax.saxutils import escape, quoteattr

    pad = " " * (indent * level) if indent else ""
    nl = "\n" if indent else ""
    name = node.name or "node"
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node.params.items())
    if not node.children:
        _emit(out, f"{pad}<{name}{attrs}>{escape(node.text)}</{name}>{nl}", size, ctx)
        return
    seen.add(id(node))
    _emit(out, f"{pad}<{name}{attrs}>{escape(node.text)}{nl}", size, ctx)
    for c in node.children:
        _xml(c, indent, level + 1, out, seen, ctx, size)
    _emit(out, f"{pad}</{name}>{nl}", size, ctx)
    seen.discard(id(node))


@method(X, "toString", "Integer", "String", ctx=True)
def _to_string(ctx: Context, n: XNode, indent: int) -> str:
    out: list[str] = []
    _xml(n, max(0, min(indent, 16)), 0, out, set(), ctx, [0])
    return ctx.check_string("".join(out))
