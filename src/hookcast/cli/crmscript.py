"""`hookcast crmscript`: run and check CRMScript files locally, in the same sandbox (and with
the same limits) as stored scripts, without a database. Scripts run this way make no HTTP
requests: their allow-list is empty."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import command_group

# The compiler and the sandbox are imported by the commands that use them (common.py).
crmscript_app = command_group(
    "Run and check CRMScript files locally (the sandbox of crmscript webhooks)."
)

SUFFIX = ".crmscript"
_INCLUDE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")

ScriptFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The script file (UTF-8)")
]
IncludeDir = Annotated[
    Path | None,
    typer.Option(
        "--include-dir",
        exists=True,
        file_okay=False,
        help=f'Where `#include "name";` finds name{SUFFIX} [default: the script\'s directory]',
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"{path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None


def _includes(directory: Path) -> Any:
    """`#include "name";` -> the text of DIR/name.crmscript, or None (an IncludeError)."""

    def find(name: str) -> str | None:
        if not _INCLUDE_NAME.match(name) or name in (".", ".."):
            return None  # never a path outside the directory
        path = directory / f"{name}{SUFFIX}"
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return find


def _variables(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    import orjson

    from ..dispatch.plugins.crmscript import variable_text

    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _fail(f"--vars {path} is not JSON: {exc}") from None
    except OSError as exc:
        raise _fail(f"cannot read --vars {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise _fail(f"--vars {path} must hold one JSON object of variable names and values")
    # Strings as they are; other values as JSON text, like a crmscript webhook's Properties.
    return {str(k): variable_text(v) for k, v in data.items()}


@crmscript_app.command("run")
def run(
    file: ScriptFile,
    vars_file: Annotated[
        Path | None,
        typer.Option(
            "--vars",
            exists=True,
            dir_okay=False,
            help='A JSON object of variables for getVariable(), e.g. {"PrimaryKey": "18"}',
        ),
    ] = None,
    include_dir: IncludeDir = None,
) -> None:
    """Run a script and print its output. When the run fails (compile or runtime error,
    sandbox limit) the last line is `ERROR: <Kind>: <message>` and the exit status is 1."""
    from ..crmscript import Limits, run_script

    source = _read(file)
    variables = _variables(vars_file)
    result = run_script(
        source,
        variables=variables,
        include=_includes(include_dir or file.parent),
        limits=Limits(),
        name=file.stem,
    )
    out = sys.stdout
    out.write(result.output)
    if not result.success:
        if result.output and not result.output.endswith("\n"):
            out.write("\n")
        out.write(f"{result.error_line}\n")
    out.flush()
    if not result.success:
        raise typer.Exit(1)


@crmscript_app.command("check")
def check_file(file: ScriptFile, include_dir: IncludeDir = None) -> None:
    """Compile a script without running it; print each error as FILE:LINE:COLUMN: Kind:
    message. The exit status is 1 when there are errors."""
    from ..crmscript import Limits, check

    diagnostics = check(
        _read(file), include=_includes(include_dir or file.parent), limits=Limits(), name=file.stem
    )
    for d in diagnostics:
        typer.echo(f"{file}:{d.line}:{d.column}: {d.kind}: {d.message}")
    if diagnostics:
        raise typer.Exit(1)
    typer.echo(f"{file}: compiles")
