"""Integer, Float, Bool, Long and Byte (§11.1-11.3, §11.11)."""

from __future__ import annotations

import math

from ..errors import ScriptRuntimeError
from ..values import (
    NullFloat,
    NullInt,
    float_to_int,
    fmt_float,
    round_half_away,
    str_to_float,
    str_to_int,
    str_to_long,
    wrap32,
    wrap64,
)
from .registry import ctor, simple

# ---- Integer
ctor("Integer", "Integer")(lambda v: int(v))
ctor("Integer", "String")(str_to_int)
ctor("Integer", "Long")(lambda v: wrap32(v))
ctor("Integer", "Byte")(lambda v: int(v))
simple("Integer", "toString", "", "String", lambda v: str(int(v)))
simple("Integer", "toBool", "", "Bool", lambda v: v != 0)
simple("Integer", "abs", "", "Integer", lambda v: wrap32(abs(v)))
simple("Integer", "isNull", "", "Bool", lambda v: type(v) is NullInt)
simple("Integer", "toHex", "", "String", lambda v: format(v & 0xFFFFFFFF, "x"))
simple("Integer", "toFloat", "", "Float", lambda v: float(v))
simple("Integer", "toLong", "", "Long", lambda v: int(v))
simple("Integer", "toByte", "", "Byte", lambda v: v & 0xFF)

# ---- Float


def _float_from_int(v: int) -> float:
    return float(v)


ctor("Float", "Float")(lambda v: float(v))
ctor("Float", "String")(str_to_float)
ctor("Float", "Long")(_float_from_int)


def _floor(v: float) -> int:
    if math.isnan(v) or math.isinf(v):
        return float_to_int(v)
    return wrap32(math.floor(v))


simple("Float", "toString", "Integer", "String", lambda v, d: fmt_float(v, d))
simple("Float", "abs", "", "Float", lambda v: abs(float(v)))
simple("Float", "floor", "", "Integer", _floor)
simple("Float", "ceil", "", "Integer", lambda v: -_floor(-v))
simple("Float", "round", "", "Integer", round_half_away)
simple("Float", "isNull", "", "Bool", lambda v: type(v) is NullFloat)
simple("Float", "toInteger", "", "Integer", lambda v: float_to_int(v))

# ---- Bool
ctor("Bool", "Bool")(lambda v: bool(v))
simple("Bool", "toString", "", "String", lambda v: "true" if v else "false")
simple("Bool", "toInteger", "", "Integer", lambda v: 1 if v else 0)

# ---- Long
ctor("Long", "Long")(lambda v: int(v))
ctor("Long", "Integer")(lambda v: int(v))
ctor("Long", "String")(str_to_long)
simple("Long", "toString", "", "String", lambda v: str(int(v)))
simple("Long", "isNull", "", "Bool", lambda v: type(v) is NullInt)
simple("Long", "abs", "", "Long", lambda v: wrap64(abs(v)))
simple("Long", "toInteger", "", "Integer", lambda v: wrap32(v))
simple("Long", "toFloat", "", "Float", lambda v: float(v))
simple("Long", "getHighInteger", "", "Integer", lambda v: wrap32((v & 0xFFFFFFFFFFFFFFFF) >> 32))
simple("Long", "getLowInteger", "", "Integer", lambda v: wrap32(v & 0xFFFFFFFF))

# ---- Byte
ctor("Byte", "Integer")(lambda v: v & 0xFF)
ctor("Byte", "Byte")(lambda v: v)
simple("Byte", "toInteger", "", "Integer", lambda v: int(v))
simple("Byte", "toString", "", "String", lambda v: str(int(v)))
simple("Byte", "toBool", "", "Bool", lambda v: v != 0)
simple("Byte", "toHex", "", "String", lambda v: format(v, "x"))


def _hex_width(v: int, w: int) -> str:
    if w > 64:
        raise ScriptRuntimeError("toHex width too large")
    return format(v, "x").zfill(max(w, 0))


simple("Byte", "toHex", "Integer", "String", _hex_width)
