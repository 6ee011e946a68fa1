"""Statements: closures `f → signal` where signal is None, BREAK, CONTINUE or RETURN.

The closures (`def op(f): ...`) are left unannotated: `f` is always the frame (symbols.Frame)
and they are checked as untyped defs (see [tool.mypy] in pyproject.toml)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import ast
from .compile_expr import ExprCompiler
from .errors import (
    CatchableError,
    CompileProblem,
    GeneralException,
    ScriptSyntaxError,
    ScriptTypeError,
)
from .symbols import Fn, Frame
from .types import FLOAT, INT, LONG, STRING, VOID, Ty, is_numeric
from .values import wrap32, wrap64

BREAK, CONTINUE, RETURN = 1, 2, 3
Stmt = Fn


def binary_fn(op: str, ty: Ty, line: int, where: str) -> Callable[[Any, Any], Any]:
    """x op y for compound assignment, in the arithmetic of type ty."""
    from .errors import DivisionByZero

    wrap: Callable[[Any], Any] = float if ty == FLOAT else wrap64 if ty == LONG else wrap32

    def fn(x: Any, y: Any) -> Any:
        if op == "+":
            return wrap(x + y)
        if op == "-":
            return wrap(x - y)
        if op == "*":
            return wrap(x * y)
        if y == 0:
            raise DivisionByZero("division by zero" if op == "/" else "modulo by zero", line, where)
        if ty == FLOAT:
            return x / y if op == "/" else math.fmod(x, y)
        if op == "/":
            q = abs(x) // abs(y)
            return wrap(-q if (x < 0) != (y < 0) else q)
        r = abs(x) % abs(y)
        return wrap(-r if x < 0 else r)

    return fn


def _nop(f: Frame) -> None:
    return None


class StmtCompiler(ExprCompiler):
    """Statements; Compiler adds the top level (functions, structs, includes)."""

    def stmt(self, n: ast.Node) -> Stmt:
        compile_node: Callable[[ast.Node], Stmt] = getattr(self, "s_" + type(n).__name__)
        return compile_node(n)

    def stmts_block(self, stmts: list[ast.Node]) -> Stmt:
        """Compiles a statement list (scope handled by the caller) into a counted block."""
        fns = []
        for s in stmts:
            if isinstance(s, ast.Empty):
                continue
            try:
                fns.append(self.stmt(s))
            except CompileProblem as e:  # reported; the next statement is checked too
                self.record(e)
        count = len(fns) or 1
        if not fns:

            def empty(f):
                ctx = f[1]
                ctx.steps += 1
                if ctx.steps > ctx.check_at:
                    ctx.check()

            return empty
        if len(fns) == 1:
            (only,) = fns

            def block1(f):
                ctx = f[1]
                ctx.steps += 1
                if ctx.steps > ctx.check_at:
                    ctx.check()
                return only(f)

            return block1
        fns_t = tuple(fns)

        def block(f):
            ctx = f[1]
            ctx.steps += count
            if ctx.steps > ctx.check_at:
                ctx.check()
            for s in fns_t:
                r = s(f)
                if r:
                    return r
            return None

        return block

    def s_Block(self, n: ast.Block) -> Stmt:
        self.push_scope()
        try:
            return self.stmts_block(n.stmts)
        finally:
            self.pop_scope()

    def s_Empty(self, n: ast.Empty) -> Stmt:
        return _nop

    def s_Directive(self, n: ast.Directive) -> Stmt:
        raise ScriptSyntaxError(f"directive {n.name} is only allowed at top level", n.line, n.col)

    def sub(self, n: ast.Node) -> Stmt:
        """A sub-statement of if/while/for: a single statement gets its own scope."""
        if isinstance(n, ast.Block):
            return self.s_Block(n)
        self.push_scope()
        try:
            return self.stmt(n)
        finally:
            self.pop_scope()

    # ------------------------------------------------------------------ declarations
    def s_VarDecl(self, n: ast.VarDecl) -> Stmt:
        try:
            ty = self.resolve_type(n.type, allow_sized=True)
            if ty == VOID:
                raise ScriptTypeError("a variable cannot be Void", n.line, n.col)
        except CompileProblem:
            self.poisoned.add(n.name.name)  # its uses are not errors of their own
            raise
        try:
            make = self.decl_init(n, ty)
        except CompileProblem as e:  # reported; the variable is still declared
            self.record(e)
            make = self.default_of(ty)
        slot = self.declare(n.name, ty)

        def decl(f):
            f[slot] = make(f)

        return decl

    def decl_init(self, n: ast.VarDecl, ty: Ty) -> Fn:
        sized = [d for d in n.type.dims if d is not None]
        if sized:
            if n.init is not None:
                raise ScriptSyntaxError(
                    "a sized array declaration cannot have an initializer", n.line, n.col
                )
            dim_fns: list[Fn] = []
            for d in sized:
                fn, t = self.expr(d)
                if t != INT:
                    raise ScriptTypeError(f"array size must be Integer, not {t}", d.line, d.col)
                dim_fns.append(fn)
            make = self.sized_of(ty, dim_fns)
        elif n.init is not None:
            fn, t = self.expr(n.init)
            make = self.coerce(fn, t, ty, n.init, "assign")
        else:
            make = self.default_of(ty)
        return make

    # ------------------------------------------------------------------ simple statements
    def s_ExprStmt(self, n: ast.ExprStmt) -> Stmt:
        fn, ty = self.expr(n.expr)
        if ty == VOID:
            return fn  # Void calls return None, which is "no signal"

        def exprstmt(f):
            fn(f)

        return exprstmt

    def s_Assign(self, n: ast.Assign) -> Stmt:
        target = n.target
        if not self.is_lvalue(target):
            raise ScriptTypeError("cannot assign to this expression", n.line, n.col)
        val, tv = self.expr(n.value)
        if n.op == "=":
            if isinstance(target, ast.Name):
                vi = self.lookup(target.name, target)
                if vi.readonly:
                    raise ScriptTypeError(f"'{target.name}' is read-only", n.line, n.col)
                val = self.coerce(val, tv, vi.ty, n, "assign")
                slot = vi.slot
                if vi.is_global and not self.cur.is_top:

                    def gassign(f):
                        f[0][slot] = val(f)

                    return gassign

                def assign(f):
                    f[slot] = val(f)

                return assign
            res, ty = self.lvalue(target)
            val = self.coerce(val, tv, ty, n, "assign")

            def assign_ref(f):
                c, k = res(f)
                c[k] = val(f)

            return assign_ref
        res, ty = self.lvalue(target)
        op = n.op[0]
        if op == "+" and ty == STRING and tv != STRING:
            raise ScriptTypeError(
                f"cannot append {tv} to String: convert with toString() first", n.line, n.col
            )
        if op != "+" and not is_numeric(ty):
            raise ScriptTypeError(f"operator {n.op} needs a number, not {ty}", n.line, n.col)
        if op == "+" and ty == STRING:

            def append(f):
                c, k = res(f)
                x = c[k]
                y = val(f)
                if len(x) + len(y) > f[1].max_string:  # before building it
                    raise f[1].string_too_long(len(x) + len(y))
                c[k] = x + y

            return append
        if not is_numeric(tv):
            raise ScriptTypeError(
                f"operator {n.op} cannot be applied to {ty} and {tv}", n.line, n.col
            )
        rt = FLOAT if FLOAT in (ty, tv) else (LONG if LONG in (ty, tv) else INT)
        if rt != ty and not (ty == LONG and rt == INT):
            self.coerce(lambda f: None, rt, ty, n, "assign")
        op2 = binary_fn(op, ty if ty in (FLOAT, LONG) else rt, n.line, self.where)

        def compound(f):
            c, k = res(f)
            c[k] = op2(c[k], val(f))

        return compound

    def s_IncDec(self, n: ast.IncDec) -> Stmt:
        res, ty = self.lvalue(n.target)
        if not is_numeric(ty):
            raise ScriptTypeError(f"operator {n.op} needs a number, not {ty}", n.line, n.col)
        d = 1 if n.op == "++" else -1
        if isinstance(n.target, ast.Name) and ty == INT:
            vi = self.lookup(n.target.name, n.target)
            slot = vi.slot
            if not (vi.is_global and not self.cur.is_top):

                def inc_local(f):
                    v = f[slot] + d
                    f[slot] = v if -2147483648 <= v <= 2147483647 else wrap32(v)

                return inc_local
        wrap = wrap32 if ty == INT else (wrap64 if ty == LONG else float)

        def incdec(f):
            c, k = res(f)
            c[k] = wrap(c[k] + d)

        return incdec

    # ------------------------------------------------------------------ control flow
    def s_If(self, n: ast.If) -> Stmt:
        c = self.cond(n.cond)
        then = self.sub(n.then)
        if n.other is None:

            def if_(f):
                if c(f):
                    return then(f)

            return if_
        other = self.sub(n.other)

        def if_else(f):
            if c(f):
                return then(f)
            return other(f)

        return if_else

    def loop_body(self, n: ast.Node) -> Stmt:
        self.cur.loops += 1
        try:
            return self.sub(n)
        finally:
            self.cur.loops -= 1

    def s_While(self, n: ast.While) -> Stmt:
        c = self.cond(n.cond)
        body = self.loop_body(n.body)

        def while_(f):
            ctx = f[1]
            while c(f):
                ctx.steps += 1
                if ctx.steps > ctx.check_at:
                    ctx.check()
                r = body(f)
                if r:
                    if r == BREAK:
                        break
                    if r == RETURN:
                        return r
            return None

        return while_

    def s_For(self, n: ast.For) -> Stmt:
        self.push_scope()
        try:
            init = self.stmt(n.init) if n.init is not None else _nop
            c = self.cond(n.cond) if n.cond is not None else (lambda f: True)
            update = self.stmt(n.update) if n.update is not None else _nop
            body = self.loop_body(n.body)
        finally:
            self.pop_scope()

        def for_(f):
            ctx = f[1]
            init(f)
            while c(f):
                ctx.steps += 1
                if ctx.steps > ctx.check_at:
                    ctx.check()
                r = body(f)
                if r:
                    if r == BREAK:
                        break
                    if r == RETURN:
                        return r
                update(f)
            return None

        return for_

    def s_Foreach(self, n: ast.Foreach) -> Stmt:
        ty = self.resolve_type(n.type)
        arr, ta = self.expr(n.iterable)
        if not ta.is_array:
            raise ScriptTypeError(
                f"foreach needs an array, not {ta}", n.iterable.line, n.iterable.col
            )
        if ta.elem() != ty:
            raise ScriptTypeError(f"foreach variable of type {ty} over {ta}", n.line, n.col)
        self.push_scope()
        try:
            slot = self.declare(n.name, ty)
            body = self.loop_body(n.body)
        finally:
            self.pop_scope()

        def foreach(f):
            ctx = f[1]
            for v in list(arr(f)):
                ctx.steps += 1
                if ctx.steps > ctx.check_at:
                    ctx.check()
                f[slot] = v
                r = body(f)
                if r:
                    if r == BREAK:
                        break
                    if r == RETURN:
                        return r
            return None

        return foreach

    def s_Break(self, n: ast.Break) -> Stmt:
        if not self.cur.loops:
            raise ScriptSyntaxError("break outside a loop", n.line, n.col)
        return lambda f: BREAK

    def s_Continue(self, n: ast.Continue) -> Stmt:
        if not self.cur.loops:
            raise ScriptSyntaxError("continue outside a loop", n.line, n.col)
        return lambda f: CONTINUE

    def s_Return(self, n: ast.Return) -> Stmt:
        ret = self.cur.ret
        if n.value is None:
            if ret is not None and ret != VOID:
                raise ScriptTypeError(f"return needs a value of type {ret}", n.line, n.col)
            return lambda f: RETURN
        fn, t = self.expr(n.value)
        if ret is None:  # top level: value evaluated and discarded

            def top_return(f):
                fn(f)
                return RETURN

            return top_return
        if ret == VOID:
            if t != VOID:
                raise ScriptTypeError("a Void function cannot return a value", n.line, n.col)

            def void_return(f):
                fn(f)
                return RETURN

            return void_return
        fn = self.coerce(fn, t, ret, n.value, "return")

        def return_(f):
            f[2] = fn(f)
            return RETURN

        return return_

    def s_Try(self, n: ast.Try) -> Stmt:
        body = self.s_Block(n.body)
        self.push_scope()
        try:
            es = self.declare_implicit("error", STRING)
            ls = self.declare_implicit("errorLocation", STRING)
            self.cur.in_catch += 1
            try:
                handler = self.s_Block(n.handler)
            finally:
                self.cur.in_catch -= 1
        finally:
            self.pop_scope()

        def try_(f):
            ctx = f[1]
            depth = ctx.depth
            try:
                return body(f)
            except CatchableError as e:
                ctx.depth = depth
                f[es] = f"{e.kind}: {e.message}"
                f[ls] = e.location
                return handler(f)

        return try_

    def s_Throw(self, n: ast.Throw) -> Stmt:
        fn, t = self.expr(n.value)
        if t != STRING:
            raise ScriptTypeError(f"throw needs a String, not {t}", n.line, n.col)
        line, where = n.line, self.where

        def throw(f):
            raise GeneralException(str(fn(f)), line, where)

        return throw

    # definitions are only allowed at top level; the grammar keeps them there
    def s_FuncDef(self, n: ast.FuncDef) -> Stmt:  # pragma: no cover
        raise ScriptSyntaxError("functions can only be defined at top level", n.line, n.col)

    def s_StructDef(self, n: ast.StructDef) -> Stmt:  # pragma: no cover
        raise ScriptSyntaxError("structs can only be defined at top level", n.line, n.col)
