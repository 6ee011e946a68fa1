"""AST node classes. Every node carries the 1-based line and column where it starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, slots=True)
class Node:
    line: int
    col: int


# ---- types and declarations -------------------------------------------------------------


@dataclass(eq=False, slots=True)
class TypeRef(Node):
    name: str
    dims: list[Any]  # one entry per "[...]": None for "[]", an Expr for "[n]"


@dataclass(eq=False, slots=True)
class DeclName(Node):
    name: str
    reserved: bool  # a keyword or type name used as a name (NameError)
    # a struct's name: fine for functions, members and methods (separate namespaces, §7.2)
    # but not for variables, which an expression could not tell from the type
    struct_name: bool = False


@dataclass(eq=False, slots=True)
class VarDecl(Node):
    type: TypeRef
    name: DeclName
    init: Any  # Expr | None


@dataclass(eq=False, slots=True)
class Param(Node):
    type: TypeRef
    name: DeclName


@dataclass(eq=False, slots=True)
class FuncDef(Node):
    ret: TypeRef
    name: DeclName
    params: list[Param]
    body: Block


@dataclass(eq=False, slots=True)
class StructDef(Node):
    name: str
    members: list[VarDecl]
    methods: list[FuncDef]


@dataclass(eq=False, slots=True)
class Directive(Node):
    name: str
    arg: Any  # int | str | None


# ---- statements ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Block(Node):
    stmts: list[Any]


@dataclass(eq=False, slots=True)
class Empty(Node):
    pass


@dataclass(eq=False, slots=True)
class ExprStmt(Node):
    expr: Any


@dataclass(eq=False, slots=True)
class Assign(Node):
    target: Any
    op: str  # "=", "+=", "-=", "*=", "/=", "%="
    value: Any


@dataclass(eq=False, slots=True)
class IncDec(Node):
    target: Any
    op: str  # "++" | "--"


@dataclass(eq=False, slots=True)
class If(Node):
    cond: Any
    then: Any
    other: Any  # stmt | None


@dataclass(eq=False, slots=True)
class While(Node):
    cond: Any
    body: Any


@dataclass(eq=False, slots=True)
class For(Node):
    init: Any  # VarDecl | simple stmt | None
    cond: Any
    update: Any
    body: Any


@dataclass(eq=False, slots=True)
class Foreach(Node):
    type: TypeRef
    name: DeclName
    iterable: Any
    body: Any


@dataclass(eq=False, slots=True)
class Break(Node):
    pass


@dataclass(eq=False, slots=True)
class Continue(Node):
    pass


@dataclass(eq=False, slots=True)
class Return(Node):
    value: Any


@dataclass(eq=False, slots=True)
class Try(Node):
    body: Block
    handler: Block


@dataclass(eq=False, slots=True)
class Throw(Node):
    value: Any


# ---- expressions --------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Literal(Node):
    type: str  # "Integer" | "Long" | "Float" | "String" | "Bool"
    value: Any


@dataclass(eq=False, slots=True)
class Name(Node):
    name: str


@dataclass(eq=False, slots=True)
class This(Node):
    pass


@dataclass(eq=False, slots=True)
class Call(Node):
    name: str
    args: list[Any]


@dataclass(eq=False, slots=True)
class Ctor(Node):
    type: str
    args: list[Any]


@dataclass(eq=False, slots=True)
class Member(Node):
    obj: Any
    name: str


@dataclass(eq=False, slots=True)
class MethodCall(Node):
    obj: Any
    name: str
    args: list[Any]


@dataclass(eq=False, slots=True)
class Index(Node):
    obj: Any
    index: Any


@dataclass(eq=False, slots=True)
class Binary(Node):
    op: str
    left: Any
    right: Any


@dataclass(eq=False, slots=True)
class Unary(Node):
    op: str
    operand: Any


@dataclass(eq=False, slots=True)
class Program(Node):
    items: list[Any] = field(default_factory=list)
