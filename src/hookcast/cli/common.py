"""What the command modules share: the options, errors said for a person, settings, the
database and output.

Command modules import only typer and this module at their top, everything heavier
(SQLAlchemy, pydantic, rich, the HTTP stack) inside the command that needs it, so
`hookcast --help` and `--version` stay fast (tests/test_cli_help.py checks what
`import hookcast.cli` loads).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..settings import Settings
    from ..store.database import Database

USAGE = 2  # the command line or the settings are wrong
RUNTIME = 1  # something the command needed failed


class CliError(Exception):
    """A problem a person can act on: `message` (what is wrong, naming the variable or flag
    and its value, secrets masked) and `hint` (what to do), printed as one or two lines."""

    def __init__(self, message: str, hint: str = "", code: int = RUNTIME) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def lines(self) -> list[str]:
        return [f"error: {self.message}"] + ([f"  {self.hint}"] if self.hint else [])


def console() -> Console:
    from rich.console import Console

    # Created per call so the terminal width (COLUMNS) is read when the command runs.
    return Console()


def warn(message: str) -> None:
    typer.echo(message, err=True)


DEFAULT_DATABASE_URL = "sqlite:///./hookcast.db"

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="HOOKCAST_DATABASE_URL",
        show_envvar=True,
        help="The database URL: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/NAME. "
        f"[default: {DEFAULT_DATABASE_URL}]",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON (one array of objects) instead of a table.")
]
# The settings fields the commands take as flags, for naming the flag in an error.
FLAGS = {"database_url": "--db", "host": "--host", "port": "--port", "concurrency": "--concurrency"}


def settings_for(db: str | None = None, **overrides: object) -> Settings:
    """Settings from the command line, the environment and HOOKCAST_CONFIG, after warning of
    unknown HOOKCAST_* names; a CliError (exit 2) naming a bad value."""
    from ..settings import SettingsError, env_name, load_settings, unknown_names

    values = {k: v for k, v in {"database_url": db, **overrides}.items() if v is not None}
    # An option click filled from its environment variable: the settings read it from there
    # too, and then name the variable, not the flag, when it is wrong.
    values = {k: v for k, v in values.items() if os.environ.get(env_name(k)) != str(v)}
    try:
        for line in unknown_names():
            warn(line)
        return load_settings(values, FLAGS)
    except SettingsError as exc:
        raise CliError(exc.message, exc.hint, USAGE) from None


def open_database(settings: Settings, *, create: bool = False) -> Database:
    """The database of `settings`. `create` (serve, worker, migrate): create it or bring its
    schema up to date; otherwise it must exist and be migrated already, and nothing is
    created (no SQLite file, no folder, no tables) when it is not."""
    from ..store import revision
    from ..store.database import Database

    url = settings.database_url
    where = _named_by("database_url", url)
    if not create:
        _sqlite_file_must_exist(url, where)
    try:
        database = Database(url, sqlite_synchronous=settings.sqlite_synchronous)
    except ImportError as exc:
        raise _driver_missing(url, where, exc) from None
    except Exception as exc:  # SQLAlchemy's ArgumentError: not a URL it can use
        raise CliError(
            f"{where}={_masked(url)!r} is not a database URL SQLAlchemy can use: {_first_line(exc)}",
            "Use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/NAME.",
            USAGE,
        ) from None
    try:
        if create:
            database.migrate()
        else:
            # The engine, not run_sync: a failure here is this command's error, not an outage
            # to log.
            with database.engine.connect() as conn:
                state = revision.state(conn)
            if state.current is None:
                raise CliError(
                    f"no hookcast database at {_masked(url)} ({where})",
                    "Check the URL, or create one there with `hookcast migrate`.",
                )
            if not state.known:
                raise CliError(
                    f"the database at {_masked(url)} has the schema of a newer hookcast "
                    f"({state.current}; this one knows up to {state.head})",
                    "Upgrade hookcast to the version that migrated it.",
                )
            if not state.up_to_date:
                raise CliError(
                    f"the database at {_masked(url)} has an older schema ({state.current}, "
                    f"newest {state.head})",
                    "Bring it up to date with `hookcast migrate` (or start `hookcast serve`).",
                )
    except BaseException as exc:
        database.close()
        if isinstance(exc, CliError) or not isinstance(exc, Exception):
            raise
        raise connection_error(url, where, exc) from None
    return database


def connection_error(url: str, where: str, exc: BaseException) -> CliError:
    """What a failure to reach or use the database at `url` means, for a person."""
    from ..errors import DatabaseUnavailable

    cause = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__ or exc
    text = _first_line(cause)
    if isinstance(exc, ImportError):
        return _driver_missing(url, where, exc)
    if "does not exist" in text and "database" in text:
        return CliError(
            f"no hookcast database at {_masked(url)} ({where}): {text}",
            "Check the URL, or create the database (createdb NAME), then `hookcast migrate`.",
        )
    if isinstance(exc, DatabaseUnavailable) or "OperationalError" in type(exc).__name__:
        return CliError(
            f"cannot connect to the database at {_masked(url)} ({where}): {text}",
            "Check that the server is running and that the URL (host, port, user, password) is right.",
        )
    return CliError(
        f"the database at {_masked(url)} ({where}) failed: {type(cause).__name__}: {text}",
        "Run again with --debug for the traceback.",
    )


def _driver_missing(url: str, where: str, exc: ImportError) -> CliError:
    if url.startswith("postgres"):
        return CliError(
            f"{where} is a PostgreSQL URL but its driver is not installed ({exc})",
            "Install it: pip install 'hookcast[postgres]'",
        )
    return CliError(f"{where}={_masked(url)!r} needs a driver that is not installed ({exc})")


def _sqlite_file_must_exist(url: str, where: str) -> None:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return  # Database() says what is wrong with it
    if not parsed.drivername.startswith("sqlite"):
        return
    path = parsed.database
    if not path or path == ":memory:":
        raise CliError(
            f"no hookcast database at {url} ({where}): an in-memory database is always empty",
            "Give the URL of a database file, e.g. sqlite:///./hookcast.db.",
        )
    if not os.path.isfile(path):
        raise CliError(
            f"no hookcast database at {url} ({where}): {path} does not exist",
            "Check the path, or create one there with `hookcast migrate`.",
        )


def _named_by(field: str, value: str) -> str:
    """Where a setting's value came from: its variable, the TOML file, the flag, or the
    default."""
    from ..settings import Settings, config_file, env_name

    if os.environ.get(env_name(field)) == value:
        return env_name(field)
    if value == Settings.model_fields[field].default:
        return f"the default; set {FLAGS[field]} or {env_name(field)}"
    if (toml := config_file()) is not None and value in toml.read_text(encoding="utf-8"):
        return f"{field} in {toml}"
    return FLAGS[field]


def _masked(url: str) -> str:
    from ..settings import mask_url

    return mask_url(url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def print_rows(
    rows: Sequence[dict[str, Any]], columns: dict[str, Callable[[Any], str]], as_json: bool
) -> None:
    """`rows` as a JSON array (`--json`: every field, as stored) or as a table of `columns`
    (heading -> how to show the row)."""
    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(list(rows), option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*(show(row) for show in columns.values()))
    console().print(table)


def run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` on uvloop when it is installed, else on asyncio's loop."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def command_group(help: str, **kwargs: Any) -> typer.Typer:
    """A Typer app (the root or a command group) with the help every command shares: plain
    text (rich markup would eat `[default: …]`), defaults and environment variables shown."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"show_default": True, "max_content_width": 100},
        **kwargs,
    )
