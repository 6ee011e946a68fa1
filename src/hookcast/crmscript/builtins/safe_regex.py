"""`String.regexp` on Python `re`, refusing patterns that can backtrack catastrophically
(nested or many unbounded repetitions, back-references) since a regex cannot be interrupted."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typeshed describes re._parser and re._constants under their old names
    import sre_constants as _c
    import sre_parse as _p
else:  # the deprecated sre_* aliases warn on import (requires-python >= 3.11)
    from re import _constants as _c
    from re import _parser as _p

from ..errors import ScriptRuntimeError

MAX_INPUT = 200_000
_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None))


def _walk(items: _p.SubPattern, inside_repeat: bool, counter: list[int]) -> None:
    av: Any  # its shape depends on op (a SubPattern, or tuples and lists holding them)
    for op, av in items.data:
        if op in _REPEATS and op is not None:
            _lo, hi, sub = av
            unbounded = hi is _c.MAXREPEAT or hi > 100
            if unbounded:
                counter[0] += 1
            if inside_repeat and (unbounded or hi > 1):
                raise ScriptRuntimeError("regular expression too complex (nested repetition)")
            _walk(sub, inside_repeat or hi > 1, counter)
        elif op is _c.SUBPATTERN:
            _walk(av[-1], inside_repeat, counter)
        elif op is _c.BRANCH:
            for alt in av[1]:
                _walk(alt, inside_repeat, counter)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _walk(av[1], inside_repeat, counter)
        elif op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            raise ScriptRuntimeError("back-references are not supported in regular expressions")


@lru_cache(maxsize=256)
def _compile(pattern: str) -> tuple[re.Pattern[str], int]:
    try:
        parsed = _p.parse(pattern, re.IGNORECASE)
        counter = [0]
        _walk(parsed, False, counter)
        return re.compile(pattern, re.IGNORECASE), counter[0]
    except ScriptRuntimeError:
        raise
    except (re.error, RecursionError, OverflowError, ValueError) as e:
        raise ScriptRuntimeError(f"invalid regular expression: {e}") from None


def search(pattern: str, text: str) -> re.Match[str] | None:
    rx, unbounded = _compile(pattern)
    limit = MAX_INPUT if unbounded <= 1 else (20_000 if unbounded == 2 else 2_000)
    if len(text) > limit:
        raise ScriptRuntimeError("text too long for this regular expression")
    return rx.search(text)
