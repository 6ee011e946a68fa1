"""Import direction between hookcast's packages (issue 10), checked statically.

Every `.py` file under src/hookcast is parsed (never imported) and every `import` and
`from ... import` statement in it is collected: module level, inside functions and classes,
under `if TYPE_CHECKING:`, relative ones resolved against the importing module's package.
`import_violations` checks one rule over that table; a rule is one line in RULES.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "hookcast"


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, e.g. "hookcast.store.queue"
    # what the statement names, absolute: the module, and for `from m import a` also "m.a"
    # (a submodule or an attribute: `from hookcast import dispatch` names hookcast.dispatch)
    names: tuple[str, ...]
    path: str
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.importer} ({self.path}:{self.line}): {self.statement}"


def within(name: str, prefix: str) -> bool:
    """`name` is the module/package `prefix` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level - 1 >= len(parts):
        raise ValueError(f"relative import beyond the top-level package in {package}")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_in_source(
    source: str, module: str, *, is_package: bool = False, path: str = "<string>"
) -> list[Import]:
    """Every import statement of one module's source, in line order."""
    tree = ast.parse(source, filename=path)
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):  # all nodes: function bodies and `if TYPE_CHECKING:` too
        if isinstance(node, ast.Import):
            names = tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, package)
            names = (base, *(f"{base}.{a.name}" for a in node.names if a.name != "*"))
        else:
            continue
        text = " ".join((ast.get_source_segment(source, node) or "").split())
        text = text.replace("( ", "(").replace(", )", ")").replace(" )", ")")
        found.append(Import(module, names, path, node.lineno, text))
    return sorted(found, key=lambda i: i.line)


@cache
def project_imports() -> dict[str, list[Import]]:
    """Module name → its imports, for every module of the hookcast package."""
    table: dict[str, list[Import]] = {}
    for file in sorted((SRC / ROOT).rglob("*.py")):
        name = module_name(file)
        rel = str(file.relative_to(SRC.parent))
        table[name] = imports_in_source(
            file.read_text(encoding="utf-8"),
            name,
            is_package=file.name == "__init__.py",
            path=rel,
        )
    return table


def import_violations(
    importer: str,
    *,
    forbidden: Iterable[str] = (),
    only_within: str | None = None,
    transitive: bool = False,
) -> list[str]:
    """The import statements of `importer` (a module or package, with its submodules) that
    break a rule, one line each, naming the module, file, line and statement.

    forbidden: modules/packages (any, third-party too) that must not be imported.
    only_within: hookcast modules may be imported only from inside this package.
    transitive: also check every hookcast module reachable through the imports (the chain
    is shown); parent packages' `__init__` modules are not followed.
    """
    forbidden = tuple(forbidden)
    table = project_imports()
    if not any(within(m, importer) for m in table):
        raise ValueError(f"no module {importer} under {SRC}")

    def bad(name: str) -> bool:
        if any(within(name, f) for f in forbidden):
            return True
        return only_within is not None and within(name, ROOT) and not within(name, only_within)

    start = [m for m in table if within(m, importer)]
    via: dict[str, str | None] = dict.fromkeys(start)
    todo = list(start)
    out: list[str] = []
    while todo:
        module = todo.pop(0)
        for imp in table[module]:
            offending = [n for n in imp.names if bad(n)]
            if offending:
                # `from .. import metrics` names hookcast and hookcast.metrics: show the module
                shown = next((n for n in offending[1:] if n in table), offending[0])
                path: list[str] = []
                m: str | None = module
                while m is not None:
                    path.append(m)
                    m = via[m]
                route = " → ".join(reversed(path)) + ": " if len(path) > 1 else ""
                out.append(f"{route}{imp}  [imports {shown}]")
            if transitive:
                for n in imp.names:
                    if n in table and n not in via:
                        via[n] = module
                        todo.append(n)
    return out


# (importer, rule): one line per rule; `xfail(strict=True)` marks a rule the code does not
# keep yet (it must fail today, and turns the suite red once it passes: remove the mark then)
RULES = [
    pytest.param(
        "hookcast.store",
        {
            "forbidden": [
                f"{ROOT}.{p}"
                for p in (
                    "dispatch",
                    "api",
                    "cli",
                    "hub",
                    "intake",
                    "registry",
                    "scripts",
                    "verification",
                    "net",
                    "guard",
                    "payload",
                )
            ]
        },
        id="store-imports-nothing-above-it",
    ),
    pytest.param(
        "hookcast.crmscript",
        {"only_within": "hookcast.crmscript"},
        id="crmscript-imports-only-itself",
    ),
    pytest.param(
        "hookcast.model",
        {"forbidden": ["pydantic", "aiohttp"], "transitive": True},
        id="model-holds-domain-types-only",
    ),
]


@pytest.mark.parametrize(("importer", "rule"), RULES)
def test_import_direction(importer: str, rule: dict[str, Any]) -> None:
    found = import_violations(importer, **rule)
    if found:
        pytest.fail(f"{importer} breaks the rule {rule}:\n" + "\n".join(found), pytrace=False)


def test_walker_sees_every_kind_of_import() -> None:
    source = textwrap.dedent(
        """
        import os
        from typing import TYPE_CHECKING
        from . import sibling
        from ..dispatch.mail import ErrorsEmail
        if TYPE_CHECKING:
            from hookcast.api import app
        def later():
            import hookcast.cli as cli
        class C:
            def m(self):
                from .. import hub
        """
    )
    found = imports_in_source(source, "hookcast.store.queue")
    names = {n for i in found for n in i.names}
    assert {
        "os",
        "hookcast.store",
        "hookcast.store.sibling",
        "hookcast.dispatch.mail",
        "hookcast.api.app",
        "hookcast.cli",
        "hookcast.hub",
    } <= names
    assert [i.line for i in found] == sorted(i.line for i in found)
    assert found[3].statement == "from ..dispatch.mail import ErrorsEmail"
    package = imports_in_source("from . import x", "hookcast.store", is_package=True)
    assert package[0].names == ("hookcast.store", "hookcast.store.x")


def test_rules_report_what_they_forbid() -> None:
    # the API layer uses the rest of hookcast: an only_within rule on it must complain
    found = import_violations("hookcast.api", only_within="hookcast.api")
    assert found
    assert all(line.startswith("hookcast.api") and "[imports hookcast." in line for line in found)
    assert import_violations("hookcast.crmscript.values", forbidden=["math"])
    with pytest.raises(ValueError):
        import_violations("hookcast.nosuchmodule", forbidden=["os"])


def test_walker_reads_the_whole_package() -> None:
    table = project_imports()
    for name in ("hookcast", "hookcast.store.queue", "hookcast.crmscript.builtins.dates"):
        assert name in table
    assert sum(len(v) for v in table.values()) > 200
