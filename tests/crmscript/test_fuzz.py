"""Fuzzing: random token sequences and mutated corpus scripts never raise a Python exception
out of the interpreter and never run past the sandbox limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookcast.crmscript import Limits, RunResult, check, run_script

from .fakes import ALLOWED, FakeTransport

# run_script raises the recursion limit when needed; hypothesis warns about that
pytestmark = [
    pytest.mark.slow,  # hypothesis fuzz: the whole module is outside the unit tier
    pytest.mark.filterwarnings("ignore:The recursion limit will not be reset"),
]

KINDS = {
    "SyntaxError",
    "NameError",
    "TypeError",
    "IncludeError",
    "UnsupportedFeature",
    "DivisionByZero",
    "IndexOutOfRange",
    "GeneralException",
    "AssertException",
    "RuntimeError",
    "LimitExceeded",
}
LIMITS = Limits(
    max_steps=3000,
    max_call_depth=40,
    max_output=5000,
    max_seconds=2.0,
    max_string=20000,
    max_array=2000,
    max_include_depth=4,
    max_http_requests=3,
    max_memory=200_000,
)
TOKENS = [
    "Integer",
    "String",
    "Float",
    "Bool",
    "Map",
    "XMLNode",
    "JSONBuilder",
    "HTTP",
    "Vector",
    "Byte",
    "Long",
    "Date",
    "DateTime",
    "Time",
    "Void",
    "Integer[]",
    "String[]",
    "if",
    "else",
    "while",
    "for",
    "foreach",
    "in",
    "break",
    "continue",
    "return",
    "try",
    "catch",
    "throw",
    "struct",
    "this",
    "true",
    "false",
    "x",
    "y",
    "s",
    "i",
    "n",
    "m",
    "a",
    "b",
    "f",
    "g",
    "S",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ";",
    ",",
    ".",
    "=",
    "+=",
    "-=",
    "++",
    "--",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "0",
    "1",
    "7",
    "2147483647",
    "3.5",
    "4L",
    '"a"',
    "'b'",
    '"x,y"',
    "#include",
    "#setLanguageLevel",
    "print",
    "printLine",
    "getVariable",
    "parseJSON",
    "split",
    "pushBack",
    "length",
    "toString",
    "toInteger",
    "substitute",
    "append",
    "getValueFromPath",
    "insert",
    "get",
    "first",
    "next",
    "eof",
    "getKey",
    "exitWithMessage",
    "throw",
    "Ticket",
    "getActiveUser",
]
CASES = sorted(Path(__file__).with_name("cases").glob("*.crmscript"))
SOURCES = [p.read_text(encoding="utf-8") for p in CASES]


def include(name: str) -> str | None:
    p = Path(__file__).with_name("cases") / "includes" / f"{name}.crmscript"
    return p.read_text(encoding="utf-8") if p.is_file() else None


def run_checked(src: str) -> RunResult:
    t0 = time.perf_counter()
    r = run_script(
        src,
        include=include,
        limits=LIMITS,
        http=FakeTransport(),
        http_allow_hosts=ALLOWED,
        variables={"Event": "contact.changed", "PrimaryKey": "1"},
    )
    elapsed = time.perf_counter() - t0
    assert isinstance(r, RunResult)
    assert len(r.output) <= LIMITS.max_output
    assert r.steps <= LIMITS.max_steps + 1000  # a block counts its statements on entry
    assert elapsed < LIMITS.max_seconds + 1.5
    if r.success:
        assert r.error_kind is None
    else:
        assert r.error_kind in KINDS, r.error_line
        assert r.error_line == f"ERROR: {r.error_kind}: {r.error_message}"
        assert "internal error" not in (r.error_message or ""), r.error_line
    assert isinstance(check(src, include=include), list)
    return r


FUZZ = settings(
    max_examples=int(__import__("os").environ.get("CRMSCRIPT_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=40))
def test_random_token_sequences(tokens: list[str]) -> None:
    run_checked(" ".join(tokens))


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_random_text(text: str) -> None:
    run_checked(text)


_mutation = st.one_of(
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 12)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(TOKENS)),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.integers(1, 30)),
    st.tuples(st.just("swap"), st.floats(0, 1), st.floats(0, 1)),
)


def mutate(src: str, ops) -> str:
    for kind, pos, arg in ops:
        i = int(pos * len(src))
        if kind == "delete":
            src = src[:i] + src[i + arg :]
        elif kind == "insert":
            src = src[:i] + " " + arg + " " + src[i:]
        elif kind == "duplicate":
            src = src[:i] + src[i : i + arg] + src[i:]
        else:
            words = src.split(" ")
            if len(words) > 1:
                a = int(pos * (len(words) - 1))
                b = int(arg * (len(words) - 1))
                words[a], words[b] = words[b], words[a]
                src = " ".join(words)
    return src


@FUZZ
@given(st.sampled_from(SOURCES), st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_valid_scripts(src: str, ops) -> None:
    run_checked(mutate(src, ops))


def test_deep_nesting_is_refused_not_crashing() -> None:
    r = run_checked("Integer x = " + "(" * 5000 + "1" + ")" * 5000 + ";")
    assert r.success  # parentheses add no nesting
    for src in (
        "Bool b = " + "!" * 5000 + "true;",
        "Integer x = 1" + " + 1" * 5000 + ";",
        "{" * 3000 + "}" * 3000,
        "if (true) " * 3000 + ";",
    ):
        r = run_checked(src)
        assert not r.success and r.error_kind == "LimitExceeded"
