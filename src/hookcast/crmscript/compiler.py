"""Phases 1-3 in one pass over the AST: expand includes, check names/types/overloads and
build the closures that run the script. Nothing runs until the whole text is accepted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast
from .builtins import FUNCS
from .compile_expr import ExprCompiler
from .compile_stmt import RETURN, StmtCompiler
from .defaults import default_factory, sized_factory
from .errors import (
    CompileLimitExceeded,
    CompileProblem,
    IncludeError,
    IndexOutOfRange,
    LimitExceeded,
    ScriptNameError,
    ScriptSyntaxError,
    ScriptTypeError,
    UnsupportedFeature,
)
from .parser import _NS_TYPE, BUILTIN_TYPES, UNSUPPORTED_TYPES, parse
from .symbols import FuncCtx, FuncInfo, StructInfo, VarInfo
from .types import VOID, Ty

FIRST_SLOT = 3  # f[0] globals, f[1] context, f[2] return value


@dataclass
class Program:
    """The compiled form of a script: run `body` on a fresh globals frame of `nslots`."""

    body: Callable[[list], Any]
    nslots: int


def _check_sizes(ctx, sizes: list[int]) -> None:
    total = 1
    for n in sizes:
        if n < 0:
            raise IndexOutOfRange(f"negative array size {n}")
        total *= n
        if total > ctx.max_array:
            ctx.check_array(total)
    ctx.mem += total
    if ctx.mem > ctx.limits.max_memory:
        raise LimitExceeded("memory budget of the run exceeded")


class Compiler(ExprCompiler, StmtCompiler):
    def __init__(
        self,
        sources: dict[str, str],
        struct_names: set[str],
        max_include_depth: int,
        max_nesting: int,
        main_name: str = "main",
    ) -> None:
        self.sources = sources  # include name → text (pre-resolved)
        self.struct_names = struct_names
        self.max_include_depth = max_include_depth
        self.max_nesting = max_nesting
        self.depth = 0
        self.where = main_name
        self.structs: dict[str, StructInfo] = {}
        self.funcs: dict[str, list[FuncInfo]] = {}
        self.later_funcs: list[set[str]] = []
        self.top = FuncCtx(is_top=True, scopes=[{}], nslots=FIRST_SLOT)
        self.cur = self.top
        self.included: set[str] = {main_name}  # include-once also covers the script itself
        self.include_depth = 0
        self.top_stmts: list[Callable] = []

    # ------------------------------------------------------------------ scopes
    def push_scope(self) -> None:
        self.cur.scopes.append({})
        if len(self.cur.scopes) > self.max_nesting:
            raise CompileLimitExceeded("blocks nested too deeply", 0, 0)

    def pop_scope(self) -> None:
        self.cur.scopes.pop()

    def _new_slot(self) -> int:
        slot = self.cur.nslots
        self.cur.nslots += 1
        return slot

    def declare(self, name: ast.DeclName, ty: Ty) -> int:
        if name.reserved:
            raise ScriptNameError(f"'{name.name}' is a reserved word", name.line, name.col)
        scope = self.cur.scopes[-1]
        if name.name in scope:
            raise ScriptNameError(
                f"'{name.name}' is already declared in this scope", name.line, name.col
            )
        slot = self._new_slot()
        is_global = self.cur.is_top and len(self.cur.scopes) == 1
        scope[name.name] = VarInfo(ty, slot, is_global)
        return slot

    def declare_implicit(self, name: str, ty: Ty) -> int:
        slot = self._new_slot()
        self.cur.scopes[-1][name] = VarInfo(ty, slot, False, readonly=True)
        return slot

    def lookup(self, name: str, node) -> VarInfo:
        for scope in reversed(self.cur.scopes):
            vi = scope.get(name)
            if vi is not None:
                return vi
        if not self.cur.is_top:
            vi = self.top.scopes[0].get(name)
            if vi is not None:
                return vi
        raise ScriptNameError(f"unknown variable '{name}'", node.line, node.col)

    # ------------------------------------------------------------------ types
    def check_type_name(self, name: str, node) -> None:
        if name in BUILTIN_TYPES or name in self.structs:
            return
        if name in self.struct_names:
            raise ScriptNameError(
                f"struct {name} is used before its definition", node.line, node.col
            )
        if name in UNSUPPORTED_TYPES or _NS_TYPE.match(name):
            raise UnsupportedFeature(
                f"type {name} is not supported in this sandbox", node.line, node.col
            )
        raise ScriptNameError(f"unknown type {name}", node.line, node.col)

    def resolve_type(self, tref: ast.TypeRef, allow_sized: bool = False) -> Ty:
        self.check_type_name(tref.name, tref)
        dims = tref.dims
        if not allow_sized and any(d is not None for d in dims):
            raise ScriptSyntaxError(
                "array size is only allowed in a variable declaration", tref.line, tref.col
            )
        if dims and any(d is None for d in dims) and any(d is not None for d in dims):
            raise ScriptSyntaxError("mixed sized and unsized array dimensions", tref.line, tref.col)
        if tref.name == "Void" and dims:
            raise ScriptTypeError("there are no Void arrays", tref.line, tref.col)
        return Ty(tref.name, len(dims))

    def default_of(self, ty: Ty):
        return default_factory(ty, self.structs)

    def sized_of(self, ty: Ty, dim_fns: list):
        return sized_factory(ty, dim_fns, self.structs, _check_sizes)

    # ------------------------------------------------------------------ top level
    def compile_program(self, program: ast.Program) -> Program:
        self.later_funcs.append(_defined_names(program))
        self.items(program.items)
        body = self.stmts_block_top(self.top_stmts)
        return Program(body, self.top.nslots)

    def stmts_block_top(self, fns: list) -> Callable:
        fns_t = tuple(fns)
        count = len(fns_t)

        def top(f):
            ctx = f[1]
            ctx.steps += count
            if ctx.steps > ctx.check_at:
                ctx.check()
            for s in fns_t:
                if s(f) == RETURN:
                    return RETURN
            return None

        return top

    def items(self, items: list) -> None:
        for it in items:
            if isinstance(it, ast.Directive):
                self.directive(it)
            elif isinstance(it, ast.FuncDef):
                self.funcdef(it, None)
            elif isinstance(it, ast.StructDef):
                self.structdef(it)
            elif isinstance(it, ast.Empty):
                continue
            else:
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
            program = parse(text, self.struct_names)
            self.later_funcs.append(_defined_names(program))
            self.items(program.items)
            self.later_funcs.pop()
        except CompileProblem as e:
            if not getattr(e, "in_include", False):
                e.message = f'{e.message} (in include "{name}")'
                e.in_include = True  # type: ignore[attr-defined]
            raise
        finally:
            self.include_depth -= 1
            self.where = saved

    # ------------------------------------------------------------------ functions
    def funcdef(self, fd: ast.FuncDef, struct: StructInfo | None) -> FuncInfo:
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

    # ------------------------------------------------------------------ structs
    def structdef(self, sd: ast.StructDef) -> None:
        if sd.name in self.structs:
            raise ScriptNameError(f"struct {sd.name} is already defined", sd.line, sd.col)
        if sd.name in BUILTIN_TYPES:
            raise ScriptNameError(f"'{sd.name}' is a reserved word", sd.line, sd.col)
        if sd.name not in self.struct_names:
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
                ty = self.resolve_type(m.type)
                if ty == VOID:
                    raise ScriptTypeError("a member cannot be Void", m.line, m.col)
                if ty == Ty(sd.name):
                    raise ScriptTypeError(f"struct {sd.name} cannot contain itself", m.line, m.col)
                if m.name.reserved:
                    raise ScriptNameError(
                        f"'{m.name.name}' is a reserved word", m.name.line, m.name.col
                    )
                if m.name.name in info.members:
                    raise ScriptNameError(
                        f"member '{m.name.name}' is already declared", m.line, m.col
                    )
                if m.init is not None:
                    fn, t = self.expr(m.init)
                    init = self.coerce(fn, t, ty, m.init, "assign")
                else:
                    init = self.default_of(ty)
                info.members[m.name.name] = (len(info.order) + 1, ty)
                info.order.append((m.name.name, ty))
                info.inits.append(init)
        finally:
            self.cur = saved
        for md in sd.methods:
            self.funcdef(md, info)


def _defined_names(program: ast.Program) -> set[str]:
    return {it.name.name for it in program.items if isinstance(it, ast.FuncDef)}
