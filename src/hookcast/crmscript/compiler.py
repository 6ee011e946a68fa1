"""Phases 1-3 in one pass over the AST: expand includes, check names/types/overloads and
build the closures that run the script. Nothing runs until the whole text is accepted."""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .builtins import FUNCS
from .compile_base import FIRST_SLOT, TooManyProblems
from .compile_stmt import RETURN, StmtCompiler
from .errors import (
    CompileLimitExceeded,
    CompileProblem,
    CompileProblems,
    IncludeError,
    ScriptNameError,
    ScriptSyntaxError,
    ScriptTypeError,
    UnsupportedFeature,
)
from .parser import BUILTIN_TYPES, RESERVED_TYPE_WORDS, parse_reporting
from .symbols import Fn, Frame, FuncCtx, FuncInfo, StructInfo
from .types import VOID, Ty


@dataclass
class Program:
    """The compiled form of a script: run `body` on a fresh globals frame of `nslots`."""

    body: Fn
    nslots: int


class Compiler(StmtCompiler):
    """The whole pass: top-level items, includes, functions and structs."""

    # ------------------------------------------------------------------ top level
    def compile_program(self, program: ast.Program) -> Program:
        """Raises CompileProblems with every error found (in textual order)."""
        self.later_funcs.append(_defined_names(program))
        try:
            self.items(program.items)
        except TooManyProblems:
            pass
        if self.problems:
            raise CompileProblems(self.problems)
        body = self.stmts_block_top(self.top_stmts)
        return Program(body, self.top.nslots)

    def stmts_block_top(self, fns: list[Fn]) -> Fn:
        fns_t = tuple(fns)
        count = len(fns_t)

        def top(f: Frame) -> int | None:
            ctx = f[1]
            ctx.steps += count
            if ctx.steps > ctx.check_at:
                ctx.check()
            for s in fns_t:
                if s(f) == RETURN:
                    return RETURN
            return None

        return top

    def items(self, items: list[ast.Node]) -> None:
        for it in items:
            try:
                self.item(it)
            except CompileProblem as e:  # reported; the next item is checked too
                self.record(e)
            except CompileProblems as e:  # an include's syntax errors
                for p in e.problems:
                    self.record(p)

    def item(self, it: ast.Node) -> None:
        if isinstance(it, ast.Directive):
            self.directive(it)
        elif isinstance(it, ast.FuncDef):
            self.funcdef(it, None)
        elif isinstance(it, ast.StructDef):
            self.structdef(it)
        elif not isinstance(it, ast.Empty):
            self.top_stmts.append(self.stmt(it))

    def directive(self, d: ast.Directive) -> None:
        name = d.name.lower()
        if name == "#setlanguagelevel":
            if not isinstance(d.arg, int) or not 0 <= d.arg <= 4:
                raise ScriptSyntaxError("#setLanguageLevel needs a level 0..4", d.line, d.col)
            return
        if name == "#include":
            if not isinstance(d.arg, str):
                raise ScriptSyntaxError(
                    '#include needs a quoted name: #include "name";', d.line, d.col
                )
            self.include(d.arg, d)
            return
        raise ScriptSyntaxError(f"unknown directive {d.name}", d.line, d.col)

    def include(self, name: str, d: ast.Directive) -> None:
        if name in self.included:
            return
        text = self.sources.get(name)
        if text is None:
            raise IncludeError(f'unknown include "{name}"', d.line, d.col)
        if self.include_depth >= self.max_include_depth:
            raise CompileLimitExceeded(
                f"includes nested deeper than {self.max_include_depth}", d.line, d.col
            )
        self.included.add(name)
        saved = self.where
        self.where = name
        self.include_depth += 1
        try:
            program = parse_reporting(text, self.struct_names)
            self.later_funcs.append(_defined_names(program))
            try:
                self.items(program.items)
            finally:
                self.later_funcs.pop()
        except CompileProblems as e:
            for p in e.problems:
                self.record(p)  # `where` names the include
        finally:
            self.include_depth -= 1
            self.where = saved

    # ------------------------------------------------------------------ functions
    def funcdef(self, fd: ast.FuncDef, struct: StructInfo | None) -> FuncInfo:
        name = fd.name
        try:
            ret, ptys = self.signature(fd, struct)
        except CompileProblem:  # calls of it are not errors of their own
            self.poisoned.add(f"{struct.name}.{name.name}()" if struct else f"{name.name}()")
            raise
        table = struct.methods if struct is not None else self.funcs
        overloads = table.setdefault(name.name, [])
        if any(o.params == tuple(ptys) for o in overloads):
            raise ScriptNameError(
                f"{name.name}() is already defined with these parameters", name.line, name.col
            )
        fi = FuncInfo(name.name, tuple(ptys), ret, fd.line, struct)
        overloads.append(fi)
        saved = self.cur
        first = FIRST_SLOT + (1 if struct is not None else 0)
        self.cur = FuncCtx(is_top=False, scopes=[{}], nslots=first, ret=ret, struct=struct)
        try:
            for p, t in zip(fd.params, ptys, strict=False):
                self.declare(p.name, t)
            body = self.s_Block(fd.body)
            fi.nslots = self.cur.nslots
        finally:
            self.cur = saved
        fi.pad = (None,) * (fi.nslots - first - len(ptys))
        fi.default = None if ret == VOID else self.default_of(ret)
        fi.body = body
        return fi

    def signature(self, fd: ast.FuncDef, struct: StructInfo | None) -> tuple[Ty, list[Ty]]:
        ret = self.resolve_type(fd.ret)
        name = fd.name
        if name.reserved:
            raise ScriptNameError(f"'{name.name}' is a reserved word", name.line, name.col)
        if struct is None and name.name in FUNCS:
            raise ScriptNameError(f"{name.name}() is a built-in function", name.line, name.col)
        ptys = []
        for p in fd.params:
            t = self.resolve_type(p.type)
            if t == VOID:
                raise ScriptTypeError("a parameter cannot be Void", p.line, p.col)
            ptys.append(t)
        return ret, ptys

    # ------------------------------------------------------------------ structs
    def structdef(self, sd: ast.StructDef) -> None:
        if sd.name in self.structs:
            raise ScriptNameError(f"struct {sd.name} is already defined", sd.line, sd.col)
        if sd.name in BUILTIN_TYPES or sd.name in RESERVED_TYPE_WORDS:
            self.poisoned.add(sd.name)
            raise ScriptNameError(f"'{sd.name}' is a reserved word", sd.line, sd.col)
        if sd.name not in self.struct_names:
            self.poisoned.add(sd.name)
            raise UnsupportedFeature(
                f"type {sd.name} is not supported in this sandbox", sd.line, sd.col
            )
        info = StructInfo(sd.name)
        self.structs[sd.name] = info
        # member initializers see only globals (evaluated when an instance is created)
        saved = self.cur
        self.cur = FuncCtx(is_top=False, scopes=[{}], nslots=FIRST_SLOT)
        try:
            for m in sd.members:
                try:
                    self.member(sd, info, m)
                except CompileProblem as e:  # reported; its uses are not errors of their own
                    self.poisoned.add(f"{sd.name}.{m.name.name}")
                    self.record(e)
        finally:
            self.cur = saved
        for md in sd.methods:
            try:
                self.funcdef(md, info)
            except CompileProblem as e:
                self.record(e)

    def member(self, sd: ast.StructDef, info: StructInfo, m: ast.VarDecl) -> None:
        """One member declaration; member initializers see only globals."""
        ty = self.resolve_type(m.type)
        if ty == VOID:
            raise ScriptTypeError("a member cannot be Void", m.line, m.col)
        if ty == Ty(sd.name):
            raise ScriptTypeError(f"struct {sd.name} cannot contain itself", m.line, m.col)
        if m.name.reserved:
            raise ScriptNameError(f"'{m.name.name}' is a reserved word", m.name.line, m.name.col)
        if m.name.name in info.members:
            raise ScriptNameError(f"member '{m.name.name}' is already declared", m.line, m.col)
        if m.init is not None:
            fn, t = self.expr(m.init)
            init = self.coerce(fn, t, ty, m.init, "assign")
        else:
            init = self.default_of(ty)
        info.members[m.name.name] = (len(info.order) + 1, ty)
        info.order.append((m.name.name, ty))
        info.inits.append(init)


def _defined_names(program: ast.Program) -> set[str]:
    return {it.name.name for it in program.items if isinstance(it, ast.FuncDef)}
