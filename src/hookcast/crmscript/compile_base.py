"""Compile-time state shared by the expression and statement compilers: the symbol tables,
the scope stack of the function being compiled, and type names (ExprCompiler, StmtCompiler
and Compiler build on it, in that order)."""

from __future__ import annotations

from . import ast
from .defaults import default_factory, sized_factory
from .errors import (
    CompileLimitExceeded,
    CompileProblem,
    IndexOutOfRange,
    LimitExceeded,
    ScriptNameError,
    ScriptSyntaxError,
    ScriptTypeError,
    UnsupportedFeature,
)
from .parser import _NS_TYPE, BUILTIN_TYPES, UNSUPPORTED_TYPES
from .runtime import Context
from .symbols import Fn, FuncCtx, FuncInfo, StructInfo, VarInfo
from .types import Ty

FIRST_SLOT = 3  # f[0] globals, f[1] context, f[2] return value
MAX_PROBLEMS = 100  # compile errors reported for one text at most


class FollowUp(CompileProblem):
    """An error caused only by an earlier one (a name whose definition failed): not reported."""


class TooManyProblems(Exception):
    """Enough compile errors found: the pass stops."""


def _check_sizes(ctx: Context, sizes: list[int]) -> None:
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


class CompilerBase:
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
        self.top_stmts: list[Fn] = []
        self.main_name = main_name
        # every compile error is reported (§13): the pass records one and goes on with the
        # next statement; names whose definition failed are "poisoned" so that their uses do
        # not add errors of their own
        self.problems: list[CompileProblem] = []
        self.poisoned: set[str] = set()

    # ------------------------------------------------------------------ errors
    def record(self, e: CompileProblem) -> None:
        if isinstance(e, FollowUp):
            return
        if self.where != self.main_name and not e.in_include:
            e.message = f'{e.message} (in include "{self.where}")'
            e.in_include = True
        self.problems.append(e)
        if len(self.problems) >= MAX_PROBLEMS:
            raise TooManyProblems

    def follow_up(self, name: str) -> None:
        """Raise FollowUp when `name` (a variable, function, type or "S.member") failed."""
        if name in self.poisoned:
            raise FollowUp(name)

    # ------------------------------------------------------------------ scopes
    def push_scope(self) -> None:
        if len(self.cur.scopes) >= self.max_nesting:
            raise CompileLimitExceeded("blocks nested too deeply", 0, 0)
        self.cur.scopes.append({})

    def pop_scope(self) -> None:
        self.cur.scopes.pop()

    def _new_slot(self) -> int:
        slot = self.cur.nslots
        self.cur.nslots += 1
        return slot

    def declare(self, name: ast.DeclName, ty: Ty) -> int:
        if name.reserved:
            raise ScriptNameError(f"'{name.name}' is a reserved word", name.line, name.col)
        if name.struct_name:
            raise ScriptNameError(
                f"'{name.name}' names a struct and cannot name a variable", name.line, name.col
            )
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

    def lookup(self, name: str, node: ast.Node) -> VarInfo:
        for scope in reversed(self.cur.scopes):
            vi = scope.get(name)
            if vi is not None:
                return vi
        if not self.cur.is_top:
            vi = self.top.scopes[0].get(name)
            if vi is not None:
                return vi
        self.follow_up(name)
        raise ScriptNameError(f"unknown variable '{name}'", node.line, node.col)

    # ------------------------------------------------------------------ types
    def check_type_name(self, name: str, node: ast.Node) -> None:
        if name in BUILTIN_TYPES or name in self.structs:
            return
        self.follow_up(name)
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

    def default_of(self, ty: Ty) -> Fn:
        return default_factory(ty, self.structs)

    def sized_of(self, ty: Ty, dim_fns: list[Fn]) -> Fn:
        return sized_factory(ty, dim_fns, self.structs, _check_sizes)
