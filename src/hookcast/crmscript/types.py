"""Static types of the checker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ty:
    name: str  # "Integer", "String", ..., or a struct name
    dims: int = 0  # array dimensions

    def __str__(self) -> str:
        return self.name + "[]" * self.dims

    @property
    def is_array(self) -> bool:
        return self.dims > 0

    def elem(self) -> Ty:
        return Ty(self.name, self.dims - 1)

    def array(self) -> Ty:
        return Ty(self.name, self.dims + 1)


VOID = Ty("Void")
BOOL = Ty("Bool")
INT = Ty("Integer")
FLOAT = Ty("Float")
STRING = Ty("String")
LONG = Ty("Long")
BYTE = Ty("Byte")
DATE = Ty("Date")
TIME = Ty("Time")
DATETIME = Ty("DateTime")
MAP = Ty("Map")
XML = Ty("XMLNode")
JSONB = Ty("JSONBuilder")
HTTP = Ty("HTTP")
VECTOR = Ty("Vector")

VALUE_TYPES = frozenset(
    ["Bool", "Integer", "Float", "String", "Long", "Byte", "Date", "Time", "DateTime"]
)
NUMERIC = frozenset(["Integer", "Float", "Long"])
OBJECT_TYPES = frozenset(["Map", "XMLNode", "JSONBuilder", "HTTP", "Vector", "TimeZone"])


def is_value(t: Ty) -> bool:
    return t.dims == 0 and t.name in VALUE_TYPES


def is_numeric(t: Ty) -> bool:
    return t.dims == 0 and t.name in NUMERIC


def assignable(dst: Ty, src: Ty) -> bool:
    """Compatibility of §3: identical, or Integer → Float widening."""
    if dst == src:
        return True
    return dst.dims == 0 and src.dims == 0 and dst.name == "Float" and src.name == "Integer"


def widening(dst: Ty, src: Ty) -> bool:
    return dst != src and assignable(dst, src)


def parse_ty(text: str) -> Ty:
    """'String[]' → Ty('String', 1). Used by the builtin tables."""
    dims = text.count("[]")
    return Ty(text.replace("[]", ""), dims)
