"""JSON text as hookcast accepts it: every request body (and the CLI's JSON options) is read
by `loads`, which refuses what could not be stored or delivered faithfully, as a
ValidationError (400) naming the problem:

- nesting deeper than MAX_DEPTH (64, the default MaxDepth of .NET's System.Text.Json and
  Json.NET, so no body SuperOffice's own service takes is refused);
- integers outside the signed 64-bit range (they would not survive the store nor most
  receivers' parsers);
- NaN, Infinity, -Infinity and numbers that overflow a double (1e400): not JSON numbers;
- lone surrogates (`"\\ud800"`), in keys or values: not Unicode text, no UTF-8 encoding;
- text that is not valid UTF-8 (or UTF-16/32, as `json.loads` detects them).

The depth check (a scan of the text, before decoding) and the surrogate check (a walk over
the decoded value) run only when a C-speed look at the text says they could fail, so a
small signal body costs a plain `json.loads`, two `str.count` calls and one regex search."""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from .errors import ValidationError

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_DEPTH", "JSONTextError", "loads"]

MAX_DEPTH = 64
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# A \u escape of a surrogate code point (D800-DFFF); pairs are fine, lone ones are not.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JSONTextError(ValidationError):
    """The text is not JSON that hookcast accepts."""


def _refuse(message: str) -> NoReturn:
    raise JSONTextError(message)


def _integer(text: str) -> int:
    # 19 characters is the shortest text that can leave the range; int() of a longer one is
    # not even tried (Python refuses over 4,300 digits with its own error).
    if len(text) < 19:
        return int(text)
    if len(text) <= 20:
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    shown = text if len(text) <= 24 else text[:24] + "…"
    _refuse(f"an integer outside the signed 64-bit range ({INT64_MIN} to {INT64_MAX}): {shown}")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse(f"a number too large for a double-precision float: {text[:24]}")
    return value


def _constant(name: str) -> Any:
    _refuse(f"{name}, which is not a JSON number (send a finite number or null)")


_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_float, parse_constant=_constant)


def loads(raw: bytes | str, what: str = "The request body") -> Any:
    """The value of JSON text `raw`, or JSONTextError (400) saying why it is refused;
    `what` names the text in the messages."""
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as exc:
        raise JSONTextError(
            f"{what} is not valid {exc.encoding.upper()} text (byte {exc.start}: {exc.reason})."
        ) from None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        # Before decoding: the C scanner recurses once per level, and with the recursion
        # limit raised (the CRMScript interpreter does) a deep enough text overflows the
        # C stack and kills the process instead of raising RecursionError.
        _check_depth(text, what)
    try:
        value = _DECODER.decode(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise JSONTextError(f"{what} is not valid JSON: {exc}.") from None
    except RecursionError:  # nesting far past MAX_DEPTH: the C scanner's own guard
        raise JSONTextError(f"{what} is nested more than {MAX_DEPTH} levels deep.") from None
    except JSONTextError as exc:  # from a number hook: says what, not where
        raise JSONTextError(f"{what} contains {exc.message}.") from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        _walk(value, what)
    return value


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # a string (skipped) or a bracket


def _check_depth(text: str, what: str) -> None:
    """Refuse text nested deeper than MAX_DEPTH, brackets inside strings not counted."""
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                _refuse(f"{what} is nested more than {MAX_DEPTH} levels deep.")
        elif bracket in ("]", "}"):
            depth -= 1


def _walk(value: Any, what: str) -> None:
    """Unicode validity of every key and string, without recursion."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, dict):
            for key in item:
                _check_text(key, what)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        _refuse(
            f"{what} contains a lone surrogate (\\u{code:04x}) in a string, "
            "which is not Unicode text."
        )
