"""Public entry points: compile_script, check, run_script."""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from .compiler import Compiler, Program
from .errors import (
    CompileError,
    CompileLimitExceeded,
    CompileProblem,
    CompileProblems,
    Diagnostic,
    ExitScript,
    LimitExceeded,
    ScriptError,
)
from .inline import unwrap
from .limits import Limits
from .parser import parse_reporting, struct_names_in
from .runtime import Context
from .symbols import Frame
from .transport import HttpTransport

IncludeFn = Callable[[str], "str | None"]
_INCLUDE_RE = re.compile(r"#include\s*(?:\"([^\"\n]*)\"|'([^'\n]*)')")
# The compiled-code cache is bounded in bytes, estimated from the texts: compiled closures
# and the parse tree they came from cost up to ~75 bytes per source character (measured with
# tracemalloc on dense statement code; a long literal costs ~3), so 96 bounds it from above,
# plus a fixed overhead per entry. A script whose estimate exceeds a
# quarter of the budget is compiled but not kept.
_BYTES_PER_CHAR = 96
_ENTRY_OVERHEAD = 4096
_ERROR_OVERHEAD = 1024
_cache_budget = 64 << 20


def _no_include(name: str) -> str | None:
    return None


@dataclass(frozen=True)
class RunResult:
    output: str
    success: bool
    error_kind: str | None = None
    error_message: str | None = None
    error_line: str | None = None  # "ERROR: <Kind>: <message>"
    error_location: str | None = None  # "<include name>:<line>" of a run-time error
    exit_message: str | None = None  # exitWithMessage text
    steps: int = 0


@dataclass(frozen=True)
class CompiledScript:
    program: Program
    source: str
    includes: tuple[tuple[str, str], ...]


def _resolve_includes(source: str, include: IncludeFn, limits: Limits) -> dict[str, str]:
    """All texts reachable through #include directives (found textually, transitively)."""
    found: dict[str, str] = {}
    todo = [source]
    while todo:
        text = todo.pop()
        for m in _INCLUDE_RE.finditer(text):
            name = m.group(1) if m.group(1) is not None else m.group(2)
            if name in found:
                continue
            try:
                inc = include(name)
            except Exception:
                inc = None
            if isinstance(inc, str):
                found[name] = inc
                if len(found) > 10 * max(1, limits.max_include_depth) + 100:
                    return found
                todo.append(inc)
    return found


# source, include texts, max_include_depth, max_nesting, name
_CacheKey = tuple[str, tuple[tuple[str, str], ...], int, int, str]
_cache: OrderedDict[_CacheKey, tuple[CompiledScript | CompileError, int]] = OrderedDict()
_cache_lock = threading.Lock()
_cache_bytes = 0


def set_cache_budget(max_bytes: int) -> None:
    """Bound the compiled-code cache to about `max_bytes` (estimated; 0 disables it)."""
    global _cache_budget
    with _cache_lock:
        _cache_budget = max(0, max_bytes)
        _evict()


def cache_usage() -> tuple[int, int, int]:
    """(entries, estimated bytes, budget) of the compiled-code cache."""
    with _cache_lock:
        return len(_cache), _cache_bytes, _cache_budget


def _estimate(key: _CacheKey, hit: CompiledScript | CompileError) -> int:
    chars = len(key[0]) + sum(len(n) + len(t) for n, t in key[1])
    if isinstance(hit, CompileError):  # the key's texts and a few diagnostics
        return chars * 2 + _ERROR_OVERHEAD
    return chars * _BYTES_PER_CHAR + _ENTRY_OVERHEAD


def _evict() -> None:
    global _cache_bytes
    while _cache and _cache_bytes > _cache_budget:
        _, (_, size) = _cache.popitem(last=False)
        _cache_bytes -= size


def _compile(
    source: str, sources: dict[str, str], limits: Limits, name: str = "main"
) -> CompiledScript:
    try:
        names = struct_names_in(source)
        for t in sources.values():
            names |= struct_names_in(t)
        text = unwrap(source)
        program = parse_reporting(text, names)
        compiler = Compiler(
            {k: unwrap(v) for k, v in sources.items()},
            names,
            limits.max_include_depth,
            limits.max_nesting,
            name,
        )
        compiled = compiler.compile_program(program)
    except CompileProblems as e:  # every error found, in textual order (§13)
        raise CompileError([p.diagnostic() for p in e.problems]) from None
    except CompileProblem as e:
        raise CompileError([e.diagnostic()]) from None
    except RecursionError:
        raise CompileError(
            [CompileLimitExceeded("script nested too deeply").diagnostic()]
        ) from None
    return CompiledScript(compiled, source, tuple(sorted(sources.items())))


def compile_script(
    source: str,
    *,
    include: IncludeFn = _no_include,
    limits: Limits = Limits(),
    name: str = "main",
) -> CompiledScript:
    """Phases 1-3. Raises CompileError; results (and errors) are cached by source and
    include texts. `name` is the script's include name (used in `errorLocation`)."""
    sources = _resolve_includes(source, include, limits)
    key: _CacheKey = (
        source,
        tuple(sorted(sources.items())),
        limits.max_include_depth,
        limits.max_nesting,
        name,
    )
    global _cache_bytes
    hit: CompiledScript | CompileError | None = None
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            hit = entry[0]
    if hit is None:
        try:
            hit = _compile(source, sources, limits, name)
        except CompileError as e:
            hit = e
        size = _estimate(key, hit)
        with _cache_lock:
            if size <= _cache_budget // 4 and key not in _cache:
                _cache[key] = (hit, size)
                _cache_bytes += size
                _evict()
    if isinstance(hit, CompileError):
        raise CompileError(hit.diagnostics)
    return hit


def check(
    source: str, *, include: IncludeFn = _no_include, limits: Limits = Limits(), name: str = "main"
) -> list[Diagnostic]:
    """Diagnostics of phases 1-3; [] when the script is valid."""
    try:
        compile_script(source, include=include, limits=limits, name=name)
    except CompileError as e:
        return list(e.diagnostics)
    except Exception as e:  # pragma: no cover - defensive: never leak
        return [Diagnostic(0, 0, "RuntimeError", f"internal error: {type(e).__name__}")]
    return []


def _failed(
    output: str,
    kind: str,
    message: str,
    location: str | None = None,
    *,
    exit_message: str | None = None,
    steps: int = 0,
) -> RunResult:
    return RunResult(
        output,
        False,
        kind,
        message,
        f"ERROR: {kind}: {message}",
        location,
        exit_message=exit_message,
        steps=steps,
    )


def _ensure_recursion_room(limits: Limits) -> None:
    # each script call level uses a handful of Python frames; the call-depth limit must trip
    # first (RecursionError is still caught as a last resort)
    need = 2000 + limits.max_call_depth * 12 + limits.max_nesting * 4
    if sys.getrecursionlimit() < need:
        sys.setrecursionlimit(need)


_ensure_recursion_room(Limits())


def run_script(
    source_or_compiled: str | CompiledScript,
    *,
    variables: dict[str, str] | None = None,
    include: IncludeFn = _no_include,
    limits: Limits = Limits(),
    http: HttpTransport | None = None,
    http_allow_hosts: Collection[str] = (),
    name: str = "main",
) -> RunResult:
    """Compile (cached) and run. Never raises for script problems."""
    try:
        if isinstance(source_or_compiled, CompiledScript):
            compiled = source_or_compiled
        else:
            compiled = compile_script(
                str(source_or_compiled), include=include, limits=limits, name=name
            )
    except CompileError as e:
        d = e.diagnostics[0]
        return _failed("", d.kind, f"{d.message} (line {d.line}, column {d.column})")
    except Exception as e:  # pragma: no cover - defensive
        return _failed("", "RuntimeError", f"internal error: {type(e).__name__}")
    ctx = Context(limits, variables, http, http_allow_hosts)
    program = compiled.program
    _ensure_recursion_room(limits)
    g: Frame = [None] * program.nslots
    g[0] = g
    g[1] = ctx
    try:
        program.body(g)
    except ExitScript:
        pass
    except ScriptError as e:
        return _failed(
            "".join(ctx.out),
            e.kind,
            e.message,
            e.location,
            exit_message=ctx.exit_message,
            steps=ctx.steps,
        )
    except RecursionError:
        e2 = LimitExceeded("nesting too deep (Python recursion limit)")
        return _failed("".join(ctx.out), e2.kind, e2.message, steps=ctx.steps)
    except MemoryError:
        return _failed("".join(ctx.out), "LimitExceeded", "out of memory", steps=ctx.steps)
    except Exception as e:
        return _failed(
            "".join(ctx.out),
            "RuntimeError",
            f"internal error: {type(e).__name__}: {e}"[:500],
            steps=ctx.steps,
        )
    finally:
        g.clear()  # break the g[0] = g cycle
    return RunResult("".join(ctx.out), True, exit_message=ctx.exit_message, steps=ctx.steps)
