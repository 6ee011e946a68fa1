"""Text → AST: lark LALR with a contextual lexer; keywords (any letter case) and type names
are recognised by a small post-lexer, so `in` is a keyword only in a foreach header and
struct names can start declarations (`S[] list;`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from .errors import (
    CompileLimitExceeded,
    CompileProblem,
    CompileProblems,
    ScriptNameError,
    ScriptSyntaxError,
    ScriptTypeError,
)

KEYWORDS = {
    k: k.upper()
    for k in [
        "if",
        "else",
        "while",
        "for",
        "foreach",
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
    ]
}
BUILTIN_TYPES = frozenset(
    [
        "Void",
        "Bool",
        "Integer",
        "Float",
        "String",
        "Date",
        "Time",
        "DateTime",
        "Map",
        "XMLNode",
        "JSONBuilder",
        "HTTP",
        "Vector",
        "Byte",
        "Long",
        "TimeZone",
    ]
)
# Types of the real CRMScript API outside the subset (§13) and reserved CRM type words (§2):
# lexed as type names so that the checker can report them precisely.
UNSUPPORTED_TYPES = frozenset(
    [
        "Category",
        "Company",
        "Customer",
        "Diary",
        "Email",
        "Generic",
        "Inbox",
        "Invoice",
        "License",
        "Message",
        "Priority",
        "Ticket",
        "User",
        "SearchEngine",
        "Attachment",
        "ExtraTable",
        "Parser",
        "ReplyTemplate",
        "EventData",
        "File",
        # the other classes of SuperOffice's CRMScript reference that need the CRM, the web
        # context or the host
        "AppointmentSlicer",
        "Cache",
        "DBWrite",
        "DbConverter",
        "DbiControl",
        "EabEntry",
        "ExtraFieldsInfo",
        "ExtraTableInfo",
        "FHBitSet",
        "GenericSearch",
        "HtmlElement",
        "InvoiceEntry",
        "Knowledge",
        "LocalizedField",
        "MacroParameter",
        "MacroReturnValue",
        "MainMenu",
        "Notify",
        "Profile",
        "SpmCustomerList",
        "SpmMessage",
        "SpmShipment",
        "SpmStaticList",
        "StatLib",
        "StatResult",
        "StringMatrix",
        "TimeSpan",
        "Timer",
        "WeekSchedule",
        "YearSchedule",
    ]
)
# Type words of §2 that stay reserved even when a script defines a struct of that name.
RESERVED_TYPE_WORDS = frozenset(
    [
        "Category",
        "Company",
        "Customer",
        "Diary",
        "Email",
        "Generic",
        "Inbox",
        "Invoice",
        "License",
        "Message",
        "Priority",
        "Ticket",
        "User",
    ]
)
_NS_TYPE = re.compile(r"NS[A-Z][A-Za-z0-9_]*\Z")
# struct names are found before parsing (they start declarations); strings and comments are
# matched first so that their text is skipped
_STRUCT_RE = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|//[^\n]*|/\*[\s\S]*?\*/'
    r"|\bstruct\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE,
)

INT_LITERAL_MAX = 2147483648  # the magnitude of Integer's minimum, valid only negated (§2)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b"}
_ESC_RE = re.compile(r"\\(.)", re.DOTALL)

_tls = threading.local()


def is_type_name(name: str, struct_names: frozenset[str] | set[str]) -> bool:
    return (
        name in BUILTIN_TYPES
        or name in struct_names
        or name in UNSUPPORTED_TYPES
        or _NS_TYPE.match(name) is not None
    )


def _is_struct_name(name: str) -> bool:
    """A name the script defines as a struct (not a built-in or unsupported type name)."""
    return (
        name in getattr(_tls, "types", ())
        and name not in BUILTIN_TYPES
        and name not in RESERVED_TYPE_WORDS
    )


def struct_names_in(text: str) -> set[str]:
    return {name for name in _STRUCT_RE.findall(text) if name}


class _PostLexer:
    always_accept = ("NAME",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        names: frozenset[str] = getattr(_tls, "types", frozenset())
        prev = None
        for tok in self._convert(stream, names):
            _tls.last = (prev, tok)  # for error messages: `Foo x;` is an unknown type
            prev = tok
            yield tok

    def _convert(self, stream: Iterator[Token], names: frozenset[str]) -> Iterator[Token]:
        in_foreach = False
        after_struct = False  # `struct S`: S is the type being defined
        for tok in stream:
            was_struct, after_struct = after_struct, False
            if tok.type == "NAME":
                v = str(tok)
                kw = KEYWORDS.get(v.lower())
                if kw is not None:
                    tok = Token.new_borrow_pos(kw, v, tok)
                    if kw == "FOREACH":
                        in_foreach = True
                    after_struct = kw == "STRUCT"
                elif in_foreach and v.lower() == "in":
                    tok = Token.new_borrow_pos("IN", v, tok)
                    in_foreach = False
                elif is_type_name(v, names) and (was_struct or not _names_variable(tok, v)):
                    tok = Token.new_borrow_pos("TYPENAME", v, tok)
            yield tok


# a struct's name followed by what can follow a variable (member access, assignment, an
# operator, the end of an argument or statement) is a variable named like the struct (§7.2);
# a type is followed by a name, `[` or `(` instead
_AFTER_VARIABLE = frozenset(".=;),+-*/%<>!&|]")
_BLANKS = re.compile(r"(?:\s|//[^\n]*|/\*[\s\S]*?\*/)*")


def _names_variable(tok: Token, name: str) -> bool:
    if not _is_struct_name(name):
        return False
    text: str = getattr(_tls, "text", "")
    end = tok.end_pos or 0
    m = _BLANKS.match(text, end)
    nxt = text[m.end() : m.end() + 1] if m else ""
    return nxt != "" and nxt in _AFTER_VARIABLE


def _pos(x: object) -> tuple[int, int]:
    if isinstance(x, Token):
        return (x.line or 0, x.column or 0)
    if isinstance(x, ast.Node):
        return (x.line, x.col)
    return (0, 0)


def unescape(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    return _ESC_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _Builder(Transformer[Token, Any]):
    """Builds AST nodes while LALR parses (no recursion over the tree)."""

    # ---- top level
    def start(self, c: list[Any]) -> ast.Program:
        return ast.Program(1, 1, list(c))

    def directive(self, c: list[Any]) -> ast.Directive:
        return self._directive(c)

    def misplaced_directive(self, c: list[Any]) -> NoReturn:
        line, col = _pos(c[0])
        raise ScriptSyntaxError(f"directive {c[0]} is only allowed at top level", line, col)

    def _directive(self, c: list[Any]) -> ast.Directive:
        line, col = _pos(c[0])
        arg = None
        if len(c) > 1:
            a = c[1]
            arg = unescape(str(a)) if a.type == "STRING" else int(a)
        return ast.Directive(line, col, str(c[0]), arg)

    def structdef(self, c: list[Any]) -> ast.StructDef:
        line, col = _pos(c[0])
        members = [x for x in c[2:] if isinstance(x, ast.VarDecl)]
        methods = [x for x in c[2:] if isinstance(x, ast.FuncDef)]
        return ast.StructDef(line, col, str(c[1]), members, methods)

    def funcdef(self, c: list[Any]) -> ast.FuncDef:
        tname, dims, name, params, body = c
        ret = self._typeref(tname, dims)
        return ast.FuncDef(ret.line, ret.col, ret, name, params, body)

    def params(self, c: list[Any]) -> list[ast.Param]:
        return list(c)

    def param(self, c: list[Any]) -> ast.Param:
        t = self._typeref(c[0], c[1])
        return ast.Param(t.line, t.col, t, c[2])

    def brackets(self, c: list[Any]) -> list[Any]:
        return list(c)

    def bracket(self, c: list[Any]) -> Any:
        return c[0] if c else None

    def declname(self, c: list[Any]) -> ast.DeclName:
        t = c[0]
        line, col = _pos(t)
        name = str(t)
        if t.type == "TYPENAME" and _is_struct_name(name):
            return ast.DeclName(line, col, name, False, True)
        return ast.DeclName(line, col, name, t.type != "NAME")

    def _typeref(self, tname: Token, dims: list[Any]) -> ast.TypeRef:
        line, col = _pos(tname)
        return ast.TypeRef(line, col, str(tname), dims)

    def decl(self, c: list[Any]) -> ast.VarDecl:
        t = self._typeref(c[0], c[1])
        init = None
        if len(c) > 3:
            if str(c[3]) != "=":
                line, col = _pos(c[3])
                raise ScriptSyntaxError(f"unexpected '{c[3]}' in declaration", line, col)
            init = c[4]
        return ast.VarDecl(t.line, t.col, t, c[2], init)

    def decl_stmt(self, c: list[Any]) -> ast.VarDecl:
        decl: ast.VarDecl = c[0]
        return decl

    # ---- statements
    def block(self, c: list[Any]) -> ast.Block:
        line, col = _pos(c[0])
        return ast.Block(line, col, list(c[1:]))

    def empty(self, c: list[Any]) -> ast.Empty:
        return ast.Empty(0, 0)

    def exprstmt(self, c: list[Any]) -> ast.ExprStmt:
        line, col = _pos(c[0])
        return ast.ExprStmt(line, col, c[0])

    def assign(self, c: list[Any]) -> ast.Assign:
        line, col = _pos(c[0])
        return ast.Assign(line, col, c[0], str(c[1]), c[2])

    def incdec(self, c: list[Any]) -> ast.IncDec:
        line, col = _pos(c[0])
        return ast.IncDec(line, col, c[0], str(c[1]))

    def preincdec(self, c: list[Any]) -> ast.IncDec:
        line, col = _pos(c[0])
        return ast.IncDec(line, col, c[1], str(c[0]))

    def if_(self, c: list[Any]) -> ast.If:
        line, col = _pos(c[0])
        return ast.If(line, col, c[1], c[2], None)

    def if_else(self, c: list[Any]) -> ast.If:
        line, col = _pos(c[0])
        return ast.If(line, col, c[1], c[2], c[4])

    def while_(self, c: list[Any]) -> ast.While:
        line, col = _pos(c[0])
        return ast.While(line, col, c[1], c[2])

    def for_init(self, c: list[Any]) -> Any:
        return c[0] if c else None

    def for_(self, c: list[Any]) -> ast.For:
        line, col = _pos(c[0])
        rest = c[1:]
        init = rest[0]
        body = rest[-1]
        mid = rest[1:-1]
        cond = update = None
        for x in mid:
            if isinstance(x, (ast.ExprStmt, ast.Assign, ast.IncDec)):
                update = x
            else:
                cond = x
        return ast.For(line, col, init, cond, update, body)

    def foreach(self, c: list[Any]) -> ast.Foreach:
        line, col = _pos(c[0])
        t = self._typeref(c[1], c[2])
        return ast.Foreach(line, col, t, c[3], c[5], c[6])

    def break_(self, c: list[Any]) -> ast.Break:
        line, col = _pos(c[0])
        return ast.Break(line, col)

    def continue_(self, c: list[Any]) -> ast.Continue:
        line, col = _pos(c[0])
        return ast.Continue(line, col)

    def return_(self, c: list[Any]) -> ast.Return:
        line, col = _pos(c[0])
        return ast.Return(line, col, c[1] if len(c) > 1 else None)

    def try_(self, c: list[Any]) -> ast.Try:
        line, col = _pos(c[0])
        return ast.Try(line, col, c[1], c[3])

    def throw(self, c: list[Any]) -> ast.Throw:
        line, col = _pos(c[0])
        return ast.Throw(line, col, c[1])

    # ---- expressions
    def or_(self, c: list[Any]) -> ast.Binary:
        line, col = _pos(c[0])
        return ast.Binary(line, col, "||", c[0], c[1])

    def and_(self, c: list[Any]) -> ast.Binary:
        line, col = _pos(c[0])
        return ast.Binary(line, col, "&&", c[0], c[1])

    def binop(self, c: list[Any]) -> ast.Binary:
        line, col = _pos(c[0])
        return ast.Binary(line, col, str(c[1]), c[0], c[2])

    def unop(self, c: list[Any]) -> ast.Unary | ast.Literal:
        line, col = _pos(c[0])
        op, x = str(c[0]), c[1]
        if (
            op == "-"
            and isinstance(x, ast.Literal)
            and (x.type == "Float" or (x.type == "Integer" and x.value > -2147483648))
        ):
            # folded: `-2147483648` is the literal minimum (§2), and constants inline better
            return ast.Literal(line, col, x.type, -x.value)
        return ast.Unary(line, col, op, x)

    def paren(self, c: list[Any]) -> Any:
        x = c[0]
        if isinstance(x, ast.Literal) and x.type == "Integer" and x.value > 2147483647:
            # `-(2147483648)`: the minus does not apply directly to the literal (§2)
            raise ScriptTypeError(f"integer literal {x.value} does not fit 32 bits", x.line, x.col)
        return x

    def mcall(self, c: list[Any]) -> ast.MethodCall:
        line, col = _pos(c[0])
        return ast.MethodCall(line, col, c[0], str(c[1]), c[2])

    def member(self, c: list[Any]) -> ast.Member:
        line, col = _pos(c[0])
        return ast.Member(line, col, c[0], str(c[1]))

    def index(self, c: list[Any]) -> ast.Index:
        line, col = _pos(c[0])
        return ast.Index(line, col, c[0], c[1])

    def args(self, c: list[Any]) -> list[Any]:
        return list(c)

    def int_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        text = str(c[0]).lstrip("0") or "0"
        v = int(text) if len(text) <= 12 else 1 << 40
        if v > INT_LITERAL_MAX:
            # literals must fit 32-bit signed (§2); the negation happens as unary minus
            raise ScriptTypeError(
                f"integer literal {str(c[0])[:30]} does not fit 32 bits", line, col
            )
        # 2147483648 is only valid right after a unary minus: unop() folds it, the checker
        # refuses it anywhere else (x_Literal)
        return ast.Literal(line, col, "Integer", v)

    def long_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        text = str(c[0])[:-1].lstrip("0") or "0"
        v = int(text) if len(text) <= 20 else 1 << 70
        if v > 9223372036854775807:
            raise ScriptTypeError(f"long literal {str(c[0])[:30]} does not fit 64 bits", line, col)
        return ast.Literal(line, col, "Long", v)

    def float_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        return ast.Literal(line, col, "Float", float(c[0]))

    def str_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        return ast.Literal(line, col, "String", unescape(str(c[0])))

    def true_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        return ast.Literal(line, col, "Bool", True)

    def false_lit(self, c: list[Any]) -> ast.Literal:
        line, col = _pos(c[0])
        return ast.Literal(line, col, "Bool", False)

    def this(self, c: list[Any]) -> ast.This:
        line, col = _pos(c[0])
        return ast.This(line, col)

    def var(self, c: list[Any]) -> ast.Name:
        line, col = _pos(c[0])
        return ast.Name(line, col, str(c[0]))

    def call(self, c: list[Any]) -> ast.Call:
        line, col = _pos(c[0])
        return ast.Call(line, col, str(c[0]), c[1])

    def ctor(self, c: list[Any]) -> ast.Ctor:
        line, col = _pos(c[0])
        return ast.Ctor(line, col, str(c[0]), c[1])


_GRAMMAR = (Path(__file__).with_name("grammar.lark")).read_text(encoding="utf-8")
_parser = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    postlex=_PostLexer(),
    transformer=_Builder(),
    maybe_placeholders=False,
)


def _describe(tok: Token) -> str:
    if tok.type == "$END":
        return "end of text"
    text = str(tok)
    if len(text) > 30:
        text = text[:30] + "..."
    return repr(text).replace('"', "'") if text else tok.type


def _token_problem(e: UnexpectedToken) -> CompileProblem:
    tok = e.token
    line = getattr(tok, "line", None) or e.line or 0
    col = getattr(tok, "column", None) or e.column or 0
    last = getattr(_tls, "last", (None, None))
    if tok.type == "NAME" and last[0] is not None and last[0].type == "NAME" and last[1] is tok:
        p = last[0]
        return ScriptNameError(f"unknown type {p}", p.line or 0, p.column or 0)
    if tok.type == "$END":
        return ScriptSyntaxError("unexpected end of text", line, col)
    return ScriptSyntaxError(f"unexpected {_describe(tok)}", line, col)


def _chars_problem(e: UnexpectedCharacters, text: str) -> CompileProblem:
    pos = e.pos_in_stream
    ch = text[pos] if pos is not None and 0 <= pos < len(text) else "?"
    msg = "unterminated string literal" if ch in "\"'" else f"unexpected character {ch!r}"
    return ScriptSyntaxError(msg, e.line, e.column)


def _callback_problem(e: Exception) -> CompileProblem:
    """A transformer failure (lark may wrap it in VisitError)."""
    if isinstance(e, CompileProblem):
        return e
    inner = getattr(e, "orig_exc", None)
    if isinstance(inner, CompileProblem):
        return inner
    return ScriptSyntaxError(f"cannot parse: {type(inner or e).__name__}", 0, 0)


def parse(text: str, struct_names: frozenset[str] | set[str] = frozenset()) -> ast.Program:
    """Parse one script text; raises a CompileProblem (SyntaxError/TypeError)."""
    _tls.types = frozenset(struct_names)
    _tls.text = text
    _tls.last = (None, None)
    try:
        # the transformer builds the tree while parsing: the result is what start() returns
        return cast(ast.Program, _parser.parse(text))
    except UnexpectedToken as e:
        raise _token_problem(e) from None
    except UnexpectedCharacters as e:
        raise _chars_problem(e, text) from None
    except UnexpectedEOF as e:
        raise ScriptSyntaxError("unexpected end of text", e.line, e.column) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark input errors
        raise ScriptSyntaxError(
            "syntax error", getattr(e, "line", 0), getattr(e, "column", 0)
        ) from None
    except RecursionError:
        raise CompileLimitExceeded("script nested too deeply", 0, 0) from None
    except CompileProblem:
        raise
    except Exception as e:  # lark wraps transformer errors in VisitError
        raise _callback_problem(e) from None


def parse_reporting(
    text: str, struct_names: frozenset[str] | set[str] = frozenset(), max_problems: int = 100
) -> ast.Program:
    """`parse`, but a text with syntax errors raises CompileProblems with all of them (§13):
    only then is it parsed a second time, with error recovery."""
    try:
        return parse(text, struct_names)
    except CompileProblem as first:
        if isinstance(first, CompileLimitExceeded):
            raise
        try:
            found = _recover(text, struct_names, max_problems)
        except Exception:  # recovery is best effort: the first error always stands
            found = []
        rest = [p for p in found if (p.line, p.column) > (first.line, first.column)]
        raise CompileProblems([first, *rest][:max_problems]) from None


_SYNC = ("SEMICOLON", "RBRACE")  # a statement or block ends here: parsing resumes after it
_QUIET_TOKENS = 3  # errors this soon after a recovery are follow-ups of the first: not reported


def _recover(
    text: str, struct_names: frozenset[str] | set[str], limit: int
) -> list[CompileProblem]:
    """Panic-mode recovery on lark's interactive LALR parser: after an error, skip to the next
    `;` or `}`, then pop parser states until that token fits (at worst the top level)."""
    _tls.types = frozenset(struct_names)
    _tls.text = text
    _tls.last = (None, None)
    ip = _parser.parse_interactive(text)
    state = ip.parser_state
    lexer = ip.lexer_thread
    problems: list[CompileProblem] = []
    quiet = 0  # tokens still to shift before errors are reported again
    skipping = False

    def report(p: CompileProblem) -> None:
        nonlocal quiet, skipping
        if quiet == 0:
            problems.append(p)
        quiet = _QUIET_TOKENS
        skipping = True

    states = state.parse_conf.states

    def fits(tok: Token) -> bool:
        if tok.type not in states[state.state_stack[-1]]:  # cheap: most states refuse it
            return False
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(tok)
        except Exception:
            return False
        return True

    def resync(tok: Token) -> None:
        nonlocal skipping, quiet
        skipping = False
        while len(state.state_stack) > 1 and not fits(tok):
            state.state_stack.pop()
            state.value_stack.pop()
        if len(state.state_stack) == 1 and not fits(tok):
            del state.value_stack[:]
            return  # nothing takes it: dropped
        state.feed_token(tok)
        quiet = 1  # the token right after a resync may still belong to the broken statement

    def handle(tok: Token) -> None:
        nonlocal quiet
        if skipping:
            if tok.type in _SYNC:
                try:
                    resync(tok)
                except Exception as e:  # a callback refused what the sync completed
                    report(_callback_problem(e))
            return
        try:
            state.feed_token(tok)
        except UnexpectedToken as e:
            report(_token_problem(e))
            if tok.type in _SYNC:
                resync(tok)
            return
        except Exception as e:
            report(_callback_problem(e))
            if tok.type in _SYNC:
                resync(tok)
            return
        if quiet:
            quiet -= 1

    last: Token | None = None
    while len(problems) < limit:
        try:
            tokens: Iterator[Token] = lexer.lex(state)  # type: ignore[no-untyped-call]
            for tok in tokens:
                last = tok
                handle(tok)
                if len(problems) >= limit:
                    break
            break
        except UnexpectedToken as e:  # the contextual lexer found a token out of place
            last = e.token
            report(_token_problem(e))
            if e.token.type in _SYNC:
                resync(e.token)
        except UnexpectedCharacters as e:
            report(_chars_problem(e, text))
            if lexer.state is None:  # pragma: no cover - lark always has one here
                break
            line_ctr = lexer.state.line_ctr
            pos = line_ctr.char_pos
            if pos >= len(text):
                break
            line_ctr.feed(text[pos : pos + 1])
    if len(problems) < limit:
        end = Token.new_borrow_pos("$END", "", last) if last else Token("$END", "", 0, 1, 1)
        try:
            state.feed_token(end, True)
        except UnexpectedToken as e:
            if quiet < _QUIET_TOKENS:  # something parsed since the last error
                problems.append(_token_problem(e))
        except Exception as e:
            if quiet < _QUIET_TOKENS:
                problems.append(_callback_problem(e))
    return problems
