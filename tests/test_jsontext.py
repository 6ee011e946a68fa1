"""jsontext.loads, the one JSON reader of request bodies: its limits at their edges."""

from __future__ import annotations

import json

import pytest

from hookcast.errors import ValidationError
from hookcast.jsontext import INT64_MAX, INT64_MIN, MAX_DEPTH, loads


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MIN), INT64_MIN),
        ("-0", 0),
        ("1.7976931348623157e308", 1.7976931348623157e308),
        ("1e-400", 0.0),  # underflow is a number, just a small one
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is one character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash: text, not an escape
        ('{"a": "[[[[{{{{"}', {"a": "[[[[{{{{"}),  # brackets in strings are not nesting
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)),
        ('{"x": ' * MAX_DEPTH + "1" + "}" * MAX_DEPTH, json.loads('{"x": ' * 64 + "1" + "}" * 64)),
    ],
)
def test_accepted_at_the_edges(text: str, value: object) -> None:
    assert loads(text.encode()) == value


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (str(INT64_MAX + 1).encode(), "64-bit"),
        (str(INT64_MIN - 1).encode(), "64-bit"),
        (b"1" * 5000, "64-bit"),  # past Python's own int() digit limit
        (b"[1e400]", "too large"),
        (b"[NaN]", "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'["\\ud800"]', "lone surrogate (\\ud800)"),
        (b'{"\\uDFFF": 1}', "lone surrogate (\\udfff)"),
        (b'"\\ude00\\ud83d"', "lone surrogate"),  # a pair in the wrong order
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "more than 64 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "more than 64 levels"),  # past the C recursion limit
        (b'"\xed\xa0\x80"', "not valid UTF-8"),  # a surrogate encoded in UTF-8
        (b"\xff{}", "not valid"),
        (b"{nope", "not valid JSON"),
    ],
)
def test_refused_with_a_clear_message(raw: bytes, fragment: str) -> None:
    with pytest.raises(ValidationError) as refused:
        loads(raw)
    assert fragment in refused.value.message
    assert refused.value.message.startswith("The request body ")


def test_other_encodings_json_allows_are_read() -> None:
    assert loads('{"a": "ü"}'.encode("utf-16")) == {"a": "ü"}
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_the_text_is_named_in_messages() -> None:
    with pytest.raises(ValidationError, match=r"^--data contains NaN"):
        loads("NaN", "--data")
