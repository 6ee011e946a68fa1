"""Built-in functions, constructors and methods, registered into `registry` tables.

Importing this package fills the tables (each module registers its own type)."""

from . import (  # noqa: F401  (imported for their registrations)
    dates,
    functions,
    http,
    jsonbuilder,
    maps,
    misc,
    numbers,
    strings,
    xml,
)
from .registry import CTORS, FUNCS, METHODS, UNSUPPORTED_FUNCS, UNSUPPORTED_METHODS, Sig

__all__ = ["CTORS", "FUNCS", "METHODS", "UNSUPPORTED_FUNCS", "UNSUPPORTED_METHODS", "Sig"]
