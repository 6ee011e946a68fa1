"""Expressions: type-checked and turned into closures `f → value` (f is the frame list).

The closures (`def op(f): ...`, `lambda f: ...`) are left unannotated: `f` is always the frame
(symbols.Frame) and they are checked as untyped defs (see [tool.mypy] in pyproject.toml)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

from . import ast
from .builtins import CTORS, FUNCS, METHODS, UNSUPPORTED_FUNCS, UNSUPPORTED_METHODS, Sig
from .codegen import builtin_call as gen_builtin_call
from .codegen import expr2, int_arith, mark_const, mark_slot
from .compile_base import CompilerBase
from .errors import (
    CatchableError,
    CompileLimitExceeded,
    CompileProblem,
    DivisionByZero,
    ExitScript,
    IndexOutOfRange,
    LimitExceeded,
    ScriptError,
    ScriptNameError,
    ScriptRuntimeError,
    ScriptTypeError,
    UnsupportedFeature,
)
from .runtime import Context
from .struct_ops import struct_from_xml, struct_to_json
from .symbols import Fn, Frame, FuncInfo, StructInfo
from .types import BOOL, FLOAT, INT, LONG, STRING, VOID, Ty, assignable, is_numeric
from .values import wrap32, wrap64

Typed = tuple[Fn, Ty]  # a compiled expression and its static type
Ref = Callable[[Frame], tuple[Any, Any]]  # f → (container, key) of an assignable place
I32_MIN, I32_MAX = -2147483648, 2147483647
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def annotate(e: ScriptError, line: int, where: str) -> None:
    if e.line is None:
        e.line = line
        e.where = where


def _false(f: Frame) -> bool:
    return False


def _const(v: Any) -> Fn:
    return lambda f: v


def _to_float(fn: Fn) -> Fn:
    return lambda f: float(fn(f))


class _Overload(Protocol):
    """A candidate of overload resolution: a user function (FuncInfo) or a builtin (Sig)."""

    @property
    def params(self) -> tuple[Ty, ...]: ...


_O = TypeVar("_O", bound=_Overload)


class ExprCompiler(CompilerBase):
    """Expressions; StmtCompiler adds statements."""

    # ------------------------------------------------------------------ helpers
    def coerce(self, fn: Fn, src: Ty, dst: Ty, node: ast.Node, what: str) -> Fn:
        if src == dst:
            return fn
        if assignable(dst, src):
            return _to_float(fn)
        raise ScriptTypeError(f"cannot {what} {src} to {dst}", node.line, node.col)

    def cond(self, node: ast.Node) -> Fn:
        try:
            fn, ty = self.expr(node)
            if ty != BOOL:
                raise ScriptTypeError(f"condition must be Bool, not {ty}", node.line, node.col)
        except CompileProblem as e:  # reported; the body is still checked
            self.record(e)
            return _false
        return fn

    def resolve(self, cands: list[_O], argtys: list[Ty], what: str, node: ast.Node) -> _O:
        same = [c for c in cands if len(c.params) == len(argtys)]
        if not same:
            n = len(argtys)
            raise ScriptTypeError(
                f"{what} takes no {n} argument{'s' if n != 1 else ''}", node.line, node.col
            )
        exact = [c for c in same if all(p == a for p, a in zip(c.params, argtys, strict=False))]
        if exact:
            return exact[0]
        wide = [
            c for c in same if all(assignable(p, a) for p, a in zip(c.params, argtys, strict=False))
        ]
        if len(wide) == 1:
            return wide[0]
        shown = ", ".join(str(a) for a in argtys)
        if not wide:
            raise ScriptTypeError(f"no overload of {what} accepts ({shown})", node.line, node.col)
        raise ScriptTypeError(f"ambiguous call of {what} with ({shown})", node.line, node.col)

    def args(self, nodes: list[ast.Node]) -> tuple[list[Fn], list[Ty]]:
        fns: list[Fn] = []
        tys: list[Ty] = []
        for a in nodes:
            fn, ty = self.expr(a)
            if ty == VOID:
                raise ScriptTypeError("a Void value cannot be an argument", a.line, a.col)
            fns.append(fn)
            tys.append(ty)
        return fns, tys

    def coerce_args(
        self, fns: list[Fn], tys: list[Ty], params: tuple[Ty, ...], node: ast.Node
    ) -> list[Fn]:
        return [
            self.coerce(fn, t, p, node, "pass") for fn, t, p in zip(fns, tys, params, strict=False)
        ]

    # ------------------------------------------------------------------ dispatch
    def expr(self, node: ast.Node) -> Typed:
        self.depth += 1
        if self.depth > self.max_nesting:
            raise CompileLimitExceeded("expression nested too deeply", node.line, node.col)
        try:
            compile_node: Callable[[ast.Node], Typed] = getattr(self, "x_" + type(node).__name__)
            return compile_node(node)
        finally:
            self.depth -= 1

    def x_Literal(self, n: ast.Literal) -> Typed:
        if n.type == "Integer" and n.value > I32_MAX:  # 2147483648 without a minus (§2)
            raise ScriptTypeError(f"integer literal {n.value} does not fit 32 bits", n.line, n.col)
        return mark_const(_const(n.value), n.value), Ty(n.type)

    def x_Name(self, n: ast.Name) -> Typed:
        vi = self.lookup(n.name, n)
        slot = vi.slot
        if vi.is_global and not self.cur.is_top:
            return mark_slot(lambda f: f[0][slot], f"f[0][{slot}]"), vi.ty
        return mark_slot(lambda f: f[slot], f"f[{slot}]"), vi.ty

    def x_This(self, n: ast.This) -> Typed:
        st = self.cur.struct
        if st is None:
            raise ScriptNameError("'this' is only available inside struct methods", n.line, n.col)
        return (lambda f: f[3]), Ty(st.name)

    # ------------------------------------------------------------------ operators
    def x_Unary(self, n: ast.Unary) -> Typed:
        fn, ty = self.expr(n.operand)
        op = n.op
        if op == "!":
            if ty != BOOL:
                raise ScriptTypeError(f"operator ! needs Bool, not {ty}", n.line, n.col)
            return (lambda f: not fn(f)), BOOL
        if not is_numeric(ty):
            raise ScriptTypeError(f"operator {op} needs a number, not {ty}", n.line, n.col)
        if op == "+":
            return (lambda f: fn(f) + 0), ty
        if ty == INT:
            return (lambda f: wrap32(-fn(f))), ty
        if ty == LONG:
            return (lambda f: wrap64(-fn(f))), ty
        return (lambda f: -fn(f)), ty

    def x_Binary(self, n: ast.Binary) -> Typed:
        op = n.op
        a, ta = self.expr(n.left)
        b, tb = self.expr(n.right)
        if op in ("&&", "||"):
            if ta != BOOL or tb != BOOL:
                raise ScriptTypeError(
                    f"operator {op} needs Bool operands, not {ta} and {tb}", n.line, n.col
                )
            return expr2("{A} and {B}" if op == "&&" else "{A} or {B}", a, b), BOOL
        if op in ("==", "!="):
            ok = (is_numeric(ta) and is_numeric(tb)) or (
                ta == tb
                and ta.dims == 0
                and ta.name in ("String", "Bool", "Byte", "Date", "Time", "DateTime")
            )
            if not ok:
                raise ScriptTypeError(f"cannot compare {ta} {op} {tb}", n.line, n.col)
            return expr2("{A} %s {B}" % op, a, b), BOOL
        if op in ("<", "<=", ">", ">="):
            ok = (is_numeric(ta) and is_numeric(tb)) or (
                ta == tb and ta.dims == 0 and ta.name in ("String", "Date", "Time", "DateTime")
            )
            if not ok:
                raise ScriptTypeError(f"cannot compare {ta} {op} {tb}", n.line, n.col)
            return expr2("{A} %s {B}" % op, a, b), BOOL
        return self.arith(op, a, ta, b, tb, n)

    def arith(self, op: str, a: Fn, ta: Ty, b: Fn, tb: Ty, n: ast.Node) -> Typed:
        line, where = n.line, self.where
        if op == "+" and ta == STRING and tb == STRING:

            def cat(f):
                x = a(f)
                y = b(f)
                if len(x) + len(y) > f[1].max_string:  # before building it
                    raise f[1].string_too_long(len(x) + len(y))
                return x + y

            return cat, STRING
        if not (is_numeric(ta) and is_numeric(tb)):
            if STRING in (ta, tb) and op == "+":
                raise ScriptTypeError(
                    f"cannot add {ta} and {tb}: convert with toString() first", n.line, n.col
                )
            raise ScriptTypeError(
                f"operator {op} cannot be applied to {ta} and {tb}", n.line, n.col
            )
        if FLOAT in (ta, tb):
            return self._float_op(op, a, b, line, where), FLOAT
        if LONG in (ta, tb):
            return self._int_op(op, a, b, line, where, wrap64, I64_MIN, I64_MAX), LONG
        return self._int_op(op, a, b, line, where, wrap32, I32_MIN, I32_MAX), INT

    @staticmethod
    def _int_op(
        op: str,
        a: Fn,
        b: Fn,
        line: int,
        where: str,
        wrap: Callable[[int], int],
        lo: int,
        hi: int,
    ) -> Fn:
        if op in ("+", "-", "*"):
            return int_arith(op, a, b, long=wrap is wrap64)
        cb = getattr(b, "const", None)
        if op == "%" and type(cb) is int and cb > 0:

            def mod_const(f):
                x = a(f)
                return x % cb if x >= 0 else -(-x % cb)

            return mod_const
        if op == "+":

            def add(f):
                r = a(f) + b(f)
                return r if lo <= r <= hi else wrap(r)

            return add
        if op == "-":

            def sub(f):
                r = a(f) - b(f)
                return r if lo <= r <= hi else wrap(r)

            return sub
        if op == "*":

            def mul(f):
                r = a(f) * b(f)
                return r if lo <= r <= hi else wrap(r)

            return mul
        if op == "/":

            def div(f):
                x = a(f)
                y = b(f)
                if y == 0:
                    raise DivisionByZero("division by zero", line, where)
                q = abs(x) // abs(y)
                if (x < 0) != (y < 0):
                    q = -q
                return q if lo <= q <= hi else wrap(q)

            return div

        def mod(f):
            x = a(f)
            y = b(f)
            if y == 0:
                raise DivisionByZero("modulo by zero", line, where)
            r = abs(x) % abs(y)
            return -r if x < 0 else r

        return mod

    @staticmethod
    def _float_op(op: str, a: Fn, b: Fn, line: int, where: str) -> Fn:
        if op in ("+", "-", "*"):
            return expr2("{A} %s {B}" % op, a, b)
        if op == "/":

            def fdiv(f):
                x = a(f)
                y = b(f)
                if y == 0:
                    raise DivisionByZero("division by zero", line, where)
                return x / y

            return fdiv

        def fmod(f):
            x = a(f)
            y = b(f)
            if y == 0:
                raise DivisionByZero("modulo by zero", line, where)
            return math.fmod(x, y)

        return fmod

    # ------------------------------------------------------------------ access
    def checked_index(self, n: ast.Index) -> tuple[Fn, Fn, Ty]:
        """The array and index closures of `a[i]`, checked: an array, an Integer index."""
        arr, ta = self.expr(n.obj)
        if not ta.is_array:
            raise ScriptTypeError(f"{ta} cannot be indexed", n.line, n.col)
        ix, ti = self.expr(n.index)
        if ti != INT:
            raise ScriptTypeError(
                f"array index must be Integer, not {ti}", n.index.line, n.index.col
            )
        return arr, ix, ta

    def x_Index(self, n: ast.Index) -> Typed:
        arr, ix, ta = self.checked_index(n)
        line, where = n.line, self.where

        def index(f):
            a = arr(f)
            i = ix(f)
            if 0 <= i < len(a):
                return a[i]
            raise IndexOutOfRange(f"index {i} outside 0..{len(a) - 1}", line, where)

        return index, ta.elem()

    def x_Member(self, n: ast.Member) -> Typed:
        obj, ty = self.expr(n.obj)
        st = self.struct_of(ty, n)
        if n.name not in st.members:
            self.follow_up(f"{st.name}.{n.name}")
            raise ScriptNameError(f"struct {st.name} has no member '{n.name}'", n.line, n.col)
        idx, mty = st.members[n.name]
        return (lambda f: obj(f)[idx]), mty

    def struct_of(self, ty: Ty, n: ast.Node) -> StructInfo:
        st = self.structs.get(ty.name) if ty.dims == 0 else None
        if st is None:
            raise ScriptTypeError(f"{ty} has no members", n.line, n.col)
        return st

    # ------------------------------------------------------------------ lvalues
    def lvalue(self, n: ast.Node) -> tuple[Ref, Ty]:
        """Returns resolve(f) → (container, key) and the type; read c[k], write c[k] = v."""
        if isinstance(n, ast.Name):
            vi = self.lookup(n.name, n)
            if vi.readonly:
                raise ScriptTypeError(f"'{n.name}' is read-only", n.line, n.col)
            slot = vi.slot
            if vi.is_global and not self.cur.is_top:
                return (lambda f: (f[0], slot)), vi.ty
            return (lambda f: (f, slot)), vi.ty
        if isinstance(n, ast.Index):
            arr, ix, ta = self.checked_index(n)
            line, where = n.line, self.where

            def res_index(f):
                a = arr(f)
                i = ix(f)
                if 0 <= i < len(a):
                    return a, i
                raise IndexOutOfRange(f"index {i} outside 0..{len(a) - 1}", line, where)

            return res_index, ta.elem()
        if isinstance(n, ast.Member):
            obj, ty = self.expr(n.obj)
            st = self.struct_of(ty, n)
            if n.name not in st.members:
                self.follow_up(f"{st.name}.{n.name}")
                raise ScriptNameError(f"struct {st.name} has no member '{n.name}'", n.line, n.col)
            idx, mty = st.members[n.name]
            return (lambda f: (obj(f), idx)), mty
        raise ScriptTypeError("cannot assign to this expression", n.line, n.col)

    @staticmethod
    def is_lvalue(n: ast.Node) -> bool:
        return isinstance(n, (ast.Name, ast.Index, ast.Member))

    # ------------------------------------------------------------------ calls
    def x_Call(self, n: ast.Call) -> Typed:
        fns, tys = self.args(n.args)
        user = self.funcs.get(n.name)
        if user:
            fi = self.resolve(user, tys, f"{n.name}()", n)
            return self.user_call(fi, None, self.coerce_args(fns, tys, fi.params, n), n), fi.ret
        sigs = FUNCS.get(n.name)
        if sigs is None:
            if n.name in UNSUPPORTED_FUNCS or n.name.startswith("getCgi"):
                raise UnsupportedFeature(
                    f"{n.name}() is not supported in this sandbox", n.line, n.col
                )
            self.follow_up(n.name + "()")
            if any(n.name in fs for fs in self.later_funcs):
                raise ScriptNameError(
                    f"function {n.name}() is used before its definition", n.line, n.col
                )
            raise ScriptNameError(f"unknown function {n.name}()", n.line, n.col)
        sig = self.resolve(sigs, tys, f"{n.name}()", n)
        return self.builtin_call(sig, None, self.coerce_args(fns, tys, sig.params, n), n), sig.ret

    def x_Ctor(self, n: ast.Ctor) -> Typed:
        if n.type in self.funcs:  # `S()` calls a function S beside struct S (§7.2)
            return self.x_Call(ast.Call(n.line, n.col, n.type, n.args))
        if n.type in self.struct_names and any(n.type in fs for fs in self.later_funcs):
            raise ScriptNameError(
                f"function {n.type}() is used before its definition", n.line, n.col
            )
        self.check_type_name(n.type, n)
        if n.type in self.structs:
            raise ScriptTypeError(
                f"struct {n.type} has no constructor; declare a variable", n.line, n.col
            )
        sigs = CTORS.get(n.type)
        if not sigs:
            raise ScriptTypeError(f"{n.type} has no constructor", n.line, n.col)
        fns, tys = self.args(n.args)
        sig = self.resolve(sigs, tys, f"{n.type}()", n)
        return self.builtin_call(sig, None, self.coerce_args(fns, tys, sig.params, n), n), sig.ret

    def x_MethodCall(self, n: ast.MethodCall) -> Typed:
        recv, ty = self.expr(n.obj)
        fns, tys = self.args(n.args)
        name = n.name
        if ty.is_array:
            return self.array_method(recv, ty, name, fns, tys, n)
        st = self.structs.get(ty.name)
        if st is not None:
            return self.struct_method(st, recv, name, fns, tys, n)
        if ty == VOID:
            raise ScriptTypeError("a Void value has no methods", n.line, n.col)
        table = METHODS.get(ty.name, {})
        sigs = table.get(name)
        if not sigs:
            if name in UNSUPPORTED_METHODS.get(ty.name, ()):
                raise UnsupportedFeature(
                    f"{ty}.{name}() is not supported in this sandbox", n.line, n.col
                )
            raise ScriptNameError(f"{ty} has no method {name}()", n.line, n.col)
        sig = self.resolve(sigs, tys, f"{ty}.{name}()", n)
        args = self.coerce_args(fns, tys, sig.params, n)
        if sig.mutates:
            return self.mutating_call(sig, n.obj, recv, args, n), sig.ret
        return self.builtin_call(sig, recv, args, n), sig.ret

    def builtin_call(self, sig: Sig, recv: Fn | None, args: list[Fn], n: ast.Node) -> Fn:
        line, where = n.line, self.where
        name = sig.name
        allf = ([recv] if recv is not None else []) + args

        def fail(e: Exception) -> NoReturn:
            if isinstance(e, ScriptError):
                annotate(e, line, where)
                raise e
            if isinstance(e, ExitScript):  # pragma: no cover - BaseException, not caught
                raise e
            raise _internal(name, e, line, where) from None

        return gen_builtin_call(sig.impl, allf, sig.ctx, fail, check_string=sig.ret == STRING)

    def mutating_call(
        self, sig: Sig, obj_node: ast.Node, recv: Fn, args: list[Fn], n: ast.Node
    ) -> Fn:
        """Methods that change a value-type receiver (String.append, Date.addDay, ...)."""
        impl = sig.impl
        use_ctx = sig.ctx
        line, where = n.line, self.where
        name = sig.name
        if not self.is_lvalue(obj_node) or (
            isinstance(obj_node, ast.Name) and self.lookup(obj_node.name, obj_node).readonly
        ):

            def tmp(f):
                vals = [a(f) for a in args]
                try:
                    r = impl(f[1], recv(f), *vals) if use_ctx else impl(recv(f), *vals)
                except ScriptError as e:
                    annotate(e, line, where)
                    raise
                except (RecursionError, MemoryError):
                    raise
                except Exception as e:
                    raise _internal(name, e, line, where) from None
                return r[1]

            return tmp
        res, _ = self.lvalue(obj_node)

        def mut(f):
            c, k = res(f)
            vals = [a(f) for a in args]
            try:
                new, r = impl(f[1], c[k], *vals) if use_ctx else impl(c[k], *vals)
            except ScriptError as e:
                annotate(e, line, where)
                raise
            except (RecursionError, MemoryError):
                raise
            except Exception as e:
                raise _internal(name, e, line, where) from None
            c[k] = new
            return r

        return mut

    def user_call(self, fi: FuncInfo, this: Fn | None, args: list[Fn], n: ast.Node) -> Fn:
        nargs = len(args)
        if this is not None:
            args = [this, *args]
            nargs += 1
        line, where = n.line, self.where

        def finish(f: Frame, nf: Frame, ctx: Context) -> Any:
            if ctx.depth >= ctx.max_depth:
                e = LimitExceeded(f"call depth exceeds {ctx.max_depth}", line, where)
                raise e
            ctx.depth += 1
            r = fi.body(nf)
            ctx.depth -= 1
            if r:
                return nf[2]
            d = fi.default
            return d(nf) if d is not None else None

        if nargs == 0:

            def call0(f):
                ctx = f[1]
                return finish(f, [f[0], ctx, None, *fi.pad], ctx)

            return call0
        if nargs == 1:
            (a0,) = args

            def call1(f):
                v = a0(f)
                ctx = f[1]
                return finish(f, [f[0], ctx, None, v, *fi.pad], ctx)

            return call1
        if nargs == 2:
            a0, a1 = args

            def call2(f):
                v0 = a0(f)
                v1 = a1(f)
                ctx = f[1]
                return finish(f, [f[0], ctx, None, v0, v1, *fi.pad], ctx)

            return call2

        def calln(f):
            vals = [a(f) for a in args]
            ctx = f[1]
            return finish(f, [f[0], ctx, None, *vals, *fi.pad], ctx)

        return calln

    # ------------------------------------------------------------------ struct methods
    def struct_method(
        self, st: StructInfo, recv: Fn, name: str, fns: list[Fn], tys: list[Ty], n: ast.Node
    ) -> Typed:
        # the struct's own methods and the built-in one of that name are overloads (§7.2);
        # a user method with the built-in's exact signature replaces it
        cands: list[FuncInfo | _BuiltinStructMethod] = list(st.methods.get(name, ()))
        builtin = _BUILTIN_STRUCT_METHODS.get(name)
        if builtin is not None and not any(c.params == builtin.params for c in cands):
            cands.append(builtin)
        if not cands:
            self.follow_up(f"{st.name}.{name}()")
            raise ScriptNameError(f"struct {st.name} has no method {name}()", n.line, n.col)
        chosen = self.resolve(cands, tys, f"{st.name}.{name}()", n)
        if isinstance(chosen, FuncInfo):
            args = self.coerce_args(fns, tys, chosen.params, n)
            return self.user_call(chosen, recv, args, n), chosen.ret
        line, where = n.line, self.where
        (arg,) = fns
        if name == "toJson":

            def to_json(f):
                try:
                    struct_to_json(f[1], recv(f), arg(f))
                except CatchableError as e:
                    annotate(e, line, where)
                    raise

            return to_json, VOID
        structs = self.structs

        def from_xml(f):
            try:
                struct_from_xml(f, recv(f), arg(f), structs)
            except CatchableError as e:
                annotate(e, line, where)
                raise

        return from_xml, VOID

    # ------------------------------------------------------------------ arrays
    def array_method(
        self, recv: Fn, ty: Ty, name: str, fns: list[Fn], tys: list[Ty], n: ast.Node
    ) -> Typed:
        el = ty.elem()
        line, where = n.line, self.where
        nargs = len(tys)

        def want(*params: Ty) -> list[Fn]:
            if len(params) != nargs:
                raise ScriptTypeError(
                    f"{ty}.{name}() takes {len(params)} argument(s)", n.line, n.col
                )
            return [
                self.coerce(fn, t, p, n, "pass") for fn, t, p in zip(fns, tys, params, strict=False)
            ]

        def empty_err(what: str) -> IndexOutOfRange:
            return IndexOutOfRange(f"{what} on an empty array", line, where)

        if name in ("length", "size"):
            want()
            return (lambda f: len(recv(f))), INT
        if name == "clear":
            want()
            return (lambda f: recv(f).clear()), VOID
        if name in ("pushBack", "pushFront"):
            if nargs == 0:
                dflt = self.default_of(el)
                val = dflt
            else:
                (val,) = want(el)
            front = name == "pushFront"

            def push(f):
                a = recv(f)
                v = val(f)
                ctx = f[1]
                if len(a) >= ctx.max_array:
                    ctx.check_array(len(a) + 1)
                ctx.mem += len(v) if type(v) is str else 1
                if ctx.mem > ctx.limits.max_memory:
                    ctx.store("")
                if front:
                    a.insert(0, v)
                else:
                    a.append(v)

            return push, VOID
        if name in ("popBack", "popFront", "first", "last"):
            want()
            pos = 0 if name in ("popFront", "first") else -1
            pop = name.startswith("pop")

            def take(f):
                a = recv(f)
                if not a:
                    raise empty_err(name + "()")
                return a.pop(pos) if pop else a[pos]

            return take, el
        if name == "insert":
            ix, val = want(INT, el)

            def insert(f):
                a = recv(f)
                i = ix(f)
                v = val(f)
                if not 0 <= i <= len(a):
                    raise IndexOutOfRange(f"insert position {i} outside 0..{len(a)}", line, where)
                ctx = f[1]
                ctx.check_array(len(a) + 1)
                ctx.store(v)
                a.insert(i, v)

            return insert, VOID
        raise ScriptNameError(f"{ty} has no method {name}()", n.line, n.col)


@dataclass(frozen=True, slots=True)
class _BuiltinStructMethod:
    """A built-in method of every struct (§8), as an overload candidate."""

    params: tuple[Ty, ...]


_BUILTIN_STRUCT_METHODS = {
    "toJson": _BuiltinStructMethod((Ty("JSONBuilder"),)),
    "fromXMLNode": _BuiltinStructMethod((Ty("XMLNode"),)),
}


def _internal(name: str, e: Exception, line: int, where: str) -> ScriptRuntimeError:
    msg = str(e) or type(e).__name__
    return ScriptRuntimeError(f"{name}: {msg}", line, where)
