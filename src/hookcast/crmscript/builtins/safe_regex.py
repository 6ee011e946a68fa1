"""`String.regexp` on RE2 (google-re2): matching takes time linear in the text and never
backtracks, so no pattern can stall a run (`(a|a)*b`, `(a+)+$`, `a{0,100}` repeated).

The spec's Perl/ECMAScript-style subset maps onto RE2's syntax as is: literals, `.`,
classes and `\\d \\w \\s` (ASCII), anchors `^ $ \\b`, groups (capturing, `(?:...)`, named),
alternation, `* + ? {n,m}` and their lazy forms, case-insensitive (the spec's rule). RE2
has no back-references and no look-around; a pattern using them is a RuntimeError saying so,
as an invalid pattern is. Compiled programs are bounded by RE2's memory budget.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2

from ..errors import ScriptRuntimeError

MAX_PATTERN = 10_000  # characters of a pattern
_MAX_MEM = 8 << 20  # RE2's budget for one compiled pattern (program and DFA cache)
_BACKREF = re.compile(r"\\[1-9]|\\k<")
_LOOKAROUND = re.compile(r"\(\?<?[=!]")


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


_OPTIONS = _options()


@lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    if len(pattern) > MAX_PATTERN:
        raise ScriptRuntimeError(f"regular expression longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        if _BACKREF.search(pattern):
            raise ScriptRuntimeError(
                "back-references are not supported in regular expressions"
            ) from None
        if _LOOKAROUND.search(pattern):
            raise ScriptRuntimeError(
                "look-ahead and look-behind are not supported in regular expressions"
            ) from None
        reason = e.args[0] if e.args else e
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ScriptRuntimeError(f"invalid regular expression: {reason}") from None


def search(pattern: str, text: str) -> Any:
    """The first match of `pattern` in `text` (a match object with group() and groups()),
    or None."""
    return _compile(pattern).search(text)
