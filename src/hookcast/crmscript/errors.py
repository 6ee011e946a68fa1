"""Error kinds of spec §9.

Compile-time problems are reported as `Diagnostic`s inside a `CompileError`; run-time
problems are `ScriptError`s. Only `CatchableError`s can be caught by a script's
`try/catch`; `LimitExceeded` cannot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    line: int
    column: int
    kind: str  # a §9 kind, e.g. "SyntaxError"
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message} (line {self.line}, column {self.column})"


class CompileError(Exception):
    """Raised by `compile_script` when the text does not pass phases 1-3."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


class CompileProblem(Exception):
    """Internal: one compile error at a position; collected into a Diagnostic."""

    kind = "SyntaxError"
    in_include = False  # the message already names the include it comes from

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def diagnostic(self) -> Diagnostic:
        return Diagnostic(self.line, self.column, self.kind, self.message)


class CompileProblems(Exception):
    """Internal: several compile errors found in one text (§13: all are reported)."""

    def __init__(self, problems: list[CompileProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class ScriptSyntaxError(CompileProblem):
    kind = "SyntaxError"


class ScriptNameError(CompileProblem):
    kind = "NameError"


class ScriptTypeError(CompileProblem):
    kind = "TypeError"


class IncludeError(CompileProblem):
    kind = "IncludeError"


class UnsupportedFeature(CompileProblem):
    kind = "UnsupportedFeature"


class CompileLimitExceeded(CompileProblem):
    kind = "LimitExceeded"


class ScriptError(Exception):
    """A run-time failure. `line`/`where` are filled in where the error passes a
    statement or call that knows its position."""

    kind = "RuntimeError"

    def __init__(self, message: str, line: int | None = None, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.where = where

    @property
    def location(self) -> str:
        return f"{self.where}:{self.line if self.line is not None else 0}"


class CatchableError(ScriptError):
    pass


class DivisionByZero(CatchableError):
    kind = "DivisionByZero"


class IndexOutOfRange(CatchableError):
    kind = "IndexOutOfRange"


class GeneralException(CatchableError):
    kind = "GeneralException"


class AssertException(CatchableError):
    kind = "AssertException"


class ScriptRuntimeError(CatchableError):
    kind = "RuntimeError"


class LimitExceeded(ScriptError):
    """A sandbox limit (§14); never catchable by the script."""

    kind = "LimitExceeded"


class ExitScript(BaseException):
    """Internal: `exitWithMessage` or top-level `return` ends the run as Completed."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message
