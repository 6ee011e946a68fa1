"""Run-time value representation.

Values map to plain Python objects: Integer/Long/Byte → int, Float → float, String → str,
Bool → bool, arrays → list (Byte[] → bytearray), Date/Time/DateTime → datetime objects,
structs → list ``[StructInfo, member0, member1, ...]``. Null Integer/Float/String/... are
singletons of subclasses that behave as 0 / 0.0 / "" in every operation, so the hot paths
never test for null; `isNull()` tests the type.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time


class NullInt(int):
    __slots__ = ()


class NullFloat(float):
    __slots__ = ()


class NullStr(str):
    __slots__ = ()


class NullDate(date):
    __slots__ = ()


class NullTime(time):
    __slots__ = ()


class NullDateTime(datetime):
    __slots__ = ()


NULL_INT = NullInt(0)
NULL_FLOAT = NullFloat(0.0)
NULL_STR = NullStr("")
NULL_DATE = NullDate(1, 1, 1)
NULL_TIME = NullTime(0, 0, 0)
NULL_DATETIME = NullDateTime(1, 1, 1, 0, 0, 0)

NULLS = (NullInt, NullFloat, NullStr, NullDate, NullTime, NullDateTime)


def is_null(v: object) -> bool:
    return isinstance(v, NULLS)


def wrap32(v: int) -> int:
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def wrap64(v: int) -> int:
    return ((v + 0x8000000000000000) & 0xFFFFFFFFFFFFFFFF) - 0x8000000000000000


_INT_RE = re.compile(r"[ \t\r\n]*([+-]?)([0-9]+)")
_FLOAT_RE = re.compile(r"[ \t\r\n]*([+-]?)([0-9]*)(?:[.,]([0-9]*))?")


def str_to_int(s: str) -> int:
    """§11.4 toInteger: blanks, sign, digits up to the first non-digit; none → null."""
    m = _INT_RE.match(s)
    if m is None:
        return NULL_INT
    v = int(m.group(2)[:40])
    return wrap32(-v if m.group(1) == "-" else v)


def str_to_long(s: str) -> int:
    m = _INT_RE.match(s)
    if m is None:
        return NULL_INT
    v = int(m.group(2)[:40])
    return wrap64(-v if m.group(1) == "-" else v)


def str_to_float(s: str) -> float:
    m = _FLOAT_RE.match(s)
    if m is None or not (m.group(2) or m.group(3)):
        return NULL_FLOAT
    text = (m.group(2)[:400] or "0") + "." + (m.group(3)[:400] or "0")
    v = float(text)
    return -v if m.group(1) == "-" else v


def float_to_int(x: float) -> int:
    if math.isnan(x) or math.isinf(x):
        from .errors import ScriptRuntimeError

        raise ScriptRuntimeError("cannot convert a non-finite Float to Integer")
    return wrap32(int(x))


def fmt_float(x: float, decimals: int) -> str:
    """Float.toString(decimals): C printf("%.*f")."""
    d = max(0, min(int(decimals), 100))
    if math.isnan(x) or math.isinf(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return "%.*f" % (d, x)


def round_half_away(x: float) -> int:
    if math.isnan(x) or math.isinf(x):
        return float_to_int(x)
    return wrap32(math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1))


def json_float(x: float) -> str:
    """Shortest decimal that reads back to the same double (JSON output)."""
    if math.isnan(x) or math.isinf(x):
        return "null"
    return repr(float(x))
