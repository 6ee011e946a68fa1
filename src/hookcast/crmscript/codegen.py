"""Small code templates for hot binary operators: operands that are constants or frame
slots are inlined (`f[5] < 20` instead of `a(f) < b(f)`). Factories are cached per template."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, NoReturn

from .symbols import Fn
from .values import wrap32, wrap64

_NO = object()

# The marks are attributes set on the closure (function) objects themselves: a function has
# no declared attributes, hence the targeted ignores (the hot closures stay plain functions).


def mark_const(fn: Fn, value: Any) -> Fn:
    fn.const = value  # type: ignore[attr-defined]  # function attribute, read by _operand
    return fn


def mark_slot(fn: Fn, src: str) -> Fn:
    fn.slot_src = src  # type: ignore[attr-defined]  # function attribute, read by _operand
    return fn


def _operand(fn: Fn, name: str) -> tuple[str, Any]:
    const = getattr(fn, "const", _NO)
    if const is not _NO:
        return name, const
    src = getattr(fn, "slot_src", None)
    if src is not None:
        return src, None
    return f"{name}(f)", fn


@lru_cache(maxsize=512)
def _factory(template: str) -> Callable[[Any, Any, Callable[[int], int] | None], Fn]:
    src = f"def make(a, b, wrap):\n{template}\n    return op\n"
    env: dict[str, Any] = {}
    exec(compile(src, "<crmscript-op>", "exec"), env)
    make: Callable[[Any, Any, Callable[[int], int] | None], Fn] = env["make"]
    return make


def expr2(template: str, a: Fn, b: Fn, wrap: Callable[[int], int] | None = None) -> Fn:
    """template uses {A} and {B}, e.g. '{A} < {B}'. Builds `lambda f: <template>`."""
    sa, va = _operand(a, "a")
    sb, vb = _operand(b, "b")
    body = "    op = lambda f: " + template.format(A=sa, B=sb)
    return _factory(body)(va, vb, wrap)


def int_arith(op: str, a: Fn, b: Fn, long: bool = False) -> Fn:
    sa, va = _operand(a, "a")
    sb, vb = _operand(b, "b")
    lo, hi = (-(1 << 63), (1 << 63) - 1) if long else (-2147483648, 2147483647)
    body = (
        "    def op(f):\n"
        f"        r = {sa} {op} {sb}\n"
        f"        return r if {lo} <= r <= {hi} else wrap(r)"
    )
    return _factory(body)(va, vb, wrap64 if long else wrap32)


@lru_cache(maxsize=512)
def _call_factory(template: str) -> Callable[..., Fn]:
    env: dict[str, Any] = {}
    exec(compile(template, "<crmscript-call>", "exec"), env)
    make: Callable[..., Fn] = env["make"]
    return make


def builtin_call(
    impl: Callable[..., Any],
    args: list[Fn],
    use_ctx: bool,
    fail: Callable[[Exception], NoReturn],
    check_string: bool = False,
) -> Fn:
    """`impl([ctx,] *args)` with operands inlined; `fail(exc)` re-raises annotated errors.
    With check_string the String result is held to the run's max_string."""
    names = [f"a{i}" for i in range(len(args))]
    srcs: list[str] = []
    vals: list[Any] = []
    for fn, name in zip(args, names, strict=False):
        s, v = _operand(fn, name)
        srcs.append(s)
        vals.append(v)
    call_args = ", ".join((["f[1]"] if use_ctx else []) + srcs)
    params = ", ".join(["impl", "fail", *names])
    template = (
        f"def make({params}):\n"
        "    def op(f):\n"
        "        try:\n"
        + (
            f"            r = impl({call_args})\n"
            "            if len(r) > f[1].max_string:\n"
            "                raise f[1].string_too_long(len(r))\n"
            "            return r\n"
            if check_string
            else f"            return impl({call_args})\n"
        )
        + "        except (RecursionError, MemoryError):\n"
        "            raise\n"
        "        except Exception as e:\n"
        "            fail(e)\n"
        "    return op\n"
    )
    return _call_factory(template)(impl, fail, *vals)
