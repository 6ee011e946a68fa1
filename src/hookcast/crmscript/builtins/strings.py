"""String constructors and methods (§11.4).

A method whose result can be longer than its receiver computes that length first, from the
input, and raises LimitExceeded before building anything over the run's string limit
(urlEncode of 8 M "€" would otherwise build ~1 GB of pieces before it was refused).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import quote, unquote_plus

from ..errors import IndexOutOfRange, ScriptRuntimeError
from ..runtime import Context
from ..values import NullInt, NullStr, str_to_float, str_to_int, str_to_long
from .registry import ctor, method, simple
from .safe_regex import search as regex_search

S = "String"

ctor(S, "String")(lambda v: str(v))


@ctor(S, "Byte[]", ctx=True)
def _from_bytes(ctx: Context, b: bytearray) -> str:
    return ctx.check_string(bytes(b).decode("latin-1"))


simple(S, "getLength", "", "Integer", len)
# Case mapping may lengthen a string ("ß" -> "SS", at most ×3).
method(S, "toUpper", "", S, ctx=True)(lambda ctx, s: _grown(ctx, s, 3, str.upper))
method(S, "toLower", "", S, ctx=True)(lambda ctx, s: _grown(ctx, s, 3, str.lower))
simple(S, "equals", S, "Bool", lambda s, o: s == o)
simple(S, "equalsIgnoreCase", S, "Bool", lambda s, o: s.lower() == o.lower())


def _cmp(a: str, b: str) -> int:
    return (a > b) - (a < b)


simple(S, "compare", S, "Integer", _cmp)
simple(S, "caseCompare", S, "Integer", lambda s, o: _cmp(s.lower(), o.lower()))
simple(S, "beginsWith", S, "Bool", lambda s, p: s.startswith(p))
simple(S, "endsWith", S, "Bool", lambda s, p: s.endswith(p))
simple(S, "caseBeginsWith", S, "Bool", lambda s, p: s.lower().startswith(p.lower()))
simple(S, "caseEndsWith", S, "Bool", lambda s, p: s.lower().endswith(p.lower()))
simple(S, "find", S, "Integer", lambda s, p: s.find(p))
simple(S, "findCase", S, "Integer", lambda s, p: s.lower().find(p.lower()))
simple(S, "findLast", S, "Integer", lambda s, p: s.rfind(p))


@method(S, "subString", "Integer,Integer", S)
def _substring(s: str, pos: int, n: int) -> str:
    if pos < 0 or pos > len(s):
        raise IndexOutOfRange(f"subString start {pos} outside 0..{len(s)}")
    if n < 0:
        return ""
    return s[pos : pos + n]


@method(S, "substitute", "String,String", S, ctx=True)
def _substitute(ctx: Context, s: str, old: str, new: str) -> str:
    if not old:
        return str(s)
    if len(new) > len(old):
        n = s.count(old)
        size = len(s) + n * (len(new) - len(old))
        if size > ctx.max_string:
            raise ctx.string_too_long(size)
    return s.replace(old, new)


@method(S, "split", S, "String[]", ctx=True)
def _split(ctx: Context, s: str, delim: str) -> list[str]:
    if not delim:
        raise ScriptRuntimeError("split delimiter is empty")
    parts = s.split(delim)
    ctx.check_array(len(parts))
    return parts


def _before(s: str, p: str) -> str:
    i = s.find(p)
    return s if i < 0 else s[:i]


def _after(s: str, p: str) -> str:
    i = s.find(p)
    return "" if i < 0 else s[i + len(p) :]


def _before_last(s: str, p: str) -> str:
    i = s.rfind(p)
    return s if i < 0 else s[:i]


def _after_last(s: str, p: str) -> str:
    i = s.rfind(p)
    return "" if i < 0 else s[i + len(p) :]


simple(S, "until", S, S, _before)
simple(S, "before", S, S, _before)
simple(S, "after", S, S, _after)
simple(S, "beforeLast", S, S, _before_last)
simple(S, "afterLast", S, S, _after_last)
simple(S, "stripLeading", S, S, lambda s, cs: s.lstrip(cs) if cs else str(s))
simple(S, "stripTrailing", S, S, lambda s, cs: s.rstrip(cs) if cs else str(s))
simple(S, "stripLeadingAndTrailing", S, S, lambda s, cs: s.strip(cs) if cs else str(s))


@method(S, "append", S, "Void", ctx=True, mutates=True)
def _append(ctx: Context, s: str, t: str) -> tuple[str, None]:
    ctx.check_length(len(s) + len(t))
    return s + t, None


simple(S, "isEmpty", "", "Bool", lambda s: not s)
simple(S, "isNull", "", "Bool", lambda s: type(s) is NullStr)
simple(S, "toInteger", "", "Integer", str_to_int)
simple(S, "toLong", "", "Long", str_to_long)
simple(S, "isNumber", "", "Bool", lambda s: type(str_to_int(s)) is not NullInt)
simple(S, "toFloat", "", "Float", str_to_float)
simple(S, "toBool", "", "Bool", lambda s: s == "1" or s.lower() == "true")

_DIGITS = frozenset("0123456789")
simple(S, "isDigit", "", "Bool", lambda s: bool(s) and all(c in _DIGITS for c in s))
simple(S, "isAlpha", "", "Bool", lambda s: s.isalpha())
simple(S, "isAlphanumeric", "", "Bool", lambda s: s.isalnum())
simple(S, "isLower", "", "Bool", lambda s: bool(s) and all(c.islower() for c in s))
simple(S, "isUpper", "", "Bool", lambda s: bool(s) and all(c.isupper() for c in s))

# ---- extended


@method(S, "regexp", S, "String[]")
def _regexp(s: str, pattern: str) -> list[str]:
    m = regex_search(pattern, s)
    if m is None:
        return []
    return [m.group(0)] + [g if g is not None else "" for g in m.groups()]


@method(S, "getWord", "Integer", S)
def _get_word(s: str, n: int) -> str:
    words = s.split()
    return words[n] if 0 <= n < len(words) else ""


simple(S, "toByteArray", "", "Byte[]", lambda s: bytearray(s.encode("latin-1", errors="replace")))


@method(S, "utf8Encode", "", S, ctx=True)
def _utf8_encode(ctx: Context, s: str) -> str:
    raw = s.encode("utf-8", errors="replace")  # at most 4 bytes a character
    ctx.check_length(len(raw))
    return raw.decode("latin-1")


@method(S, "utf8Decode", "", S)
def _utf8_decode(s: str) -> str:
    try:
        raw = s.encode("latin-1")
    except UnicodeEncodeError:
        return str(s)
    return raw.decode("utf-8", errors="replace")


def _grown(ctx: Context, s: str, factor: int, fn: Callable[[str], str]) -> str:
    """fn(s), whose result is at most `factor` times as long as s: checked after only when
    even the worst case would be too long (the result is then built once, bounded)."""
    r = fn(s)
    if len(s) * factor > ctx.max_string:
        ctx.check_length(len(r))
    return r


_URL_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_URL_SAFE_BYTES = bytes(sorted(_URL_SAFE))


@method(S, "urlEncode", "", S, ctx=True)
def _url_encode(ctx: Context, s: str) -> str:
    raw = s.encode("utf-8", errors="replace")
    ctx.check_length(len(raw))
    unsafe = len(raw.translate(None, _URL_SAFE_BYTES))  # each becomes "%XX"
    ctx.check_length(len(raw) + 2 * unsafe)
    return quote(raw, safe="-_.~")


simple(S, "urlDecode", "", S, lambda s: unquote_plus(s))

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_XML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
_XML_TABLE = str.maketrans(_XML)


def _escaped_length(s: str, table: dict[str, str]) -> int:
    return len(s) + sum(s.count(c) * (len(r) - 1) for c, r in table.items())


@method(S, "htmlEncode", "", S, ctx=True)
def _html_encode(ctx: Context, s: str) -> str:
    ctx.check_length(_escaped_length(s, _HTML))
    return html.escape(s, quote=True)


@method(S, "xmlEncode", "", S, ctx=True)
def _xml_encode(ctx: Context, s: str) -> str:
    ctx.check_length(_escaped_length(s, _XML))
    return s.translate(_XML_TABLE)


simple(S, "htmlDecode", "", S, lambda s: html.unescape(s))
simple(S, "xmlDecode", "", S, lambda s: html.unescape(s))


@method(S, "keepChars", S, S)
def _keep_chars(s: str, keep: str) -> str:
    # A set: linear in len(s) + len(keep), not their product (1 M × 1 M took 19.6 s).
    if not keep:
        return ""
    wanted = frozenset(keep)
    return "".join(c for c in s if c in wanted)
