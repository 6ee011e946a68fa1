"""Help that shows what a person needs (issue 17): every command's --help shows the defaults
and environment variables of its options (plain text: rich markup would eat `[default: …]`),
flags without a `<bool>` metavar, --json on every listing command, and `import hookcast.cli`
loads none of the heavy libraries, so --help and --version stay fast (measured, not asserted:
see the report of issue 17)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from hookcast import __version__
from hookcast.cli import app
from hookcast.settings import Settings

LISTINGS = [["keys", "list"], ["webhooks", "list"], ["workers"], ["settings"]]
# Each option that stands for a setting: (flag, its setting)
SETTING_FLAGS = {"--db": "database_url", "--host": "host", "--port": "port", "--concurrency": "concurrency"}  # fmt: skip


def commands() -> Iterator[list[str]]:
    """The path of every command and group, the root first."""

    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def helptext(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.stdout


ALL = list(commands())


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p) for p in ALL}
    assert {
        "serve",
        "worker",
        "migrate",
        "doctor",
        "settings",
        "keys create",
        "crmscript run",
    } <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "hookcast")
def test_every_help_shows_defaults_and_variables(path: list[str]) -> None:
    text = helptext(*path)
    assert "<bool>" not in text
    assert "[default: " not in text or re.search(r"\[default: [^\]\s]", text)  # never emptied
    for flag, setting in SETTING_FLAGS.items():
        if re.search(rf"^\s+{flag}\b", text, re.MULTILINE):
            block = text[text.index(flag) :].split("\n  -", 1)[0]
            flat = " ".join(block.split())
            assert f"env var: HOOKCAST_{setting.upper()}" in flat, flat
            default = Settings.model_fields[setting].default
            assert f"[default: {default}]" in flat, flat


def test_defaults_of_ordinary_options_are_shown() -> None:
    assert "[default: admin]" in helptext("keys", "create")
    assert "[default: 0;" in helptext("signal")  # --associate-id, then its range


@pytest.mark.parametrize("path", LISTINGS, ids=" ".join)
def test_every_listing_command_has_json(path: list[str]) -> None:
    assert "--json" in helptext(*path)


def test_settings_lists_every_setting_with_its_variable_and_default() -> None:
    result = CliRunner().invoke(
        app, ["settings", "--json"], env={"HOOKCAST_SMTP_PASSWORD": "pw1", "HOOKCAST_CYCLES": "5"}
    )
    assert result.exit_code == 0, result.output
    rows = {row["setting"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(Settings.model_fields)
    assert rows["cycles"] == {
        "setting": "cycles",
        "variable": "HOOKCAST_CYCLES",
        "default": "3",
        "value": "5",
    }
    assert rows["smtp_password"]["value"] == "***" and "pw1" not in result.stdout


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"hookcast {__version__}\n"


def test_importing_the_command_line_loads_nothing_heavy() -> None:
    heavy = ["sqlalchemy", "pydantic", "rich", "aiohttp", "alembic", "lark", "uvicorn", "fastapi", "hookcast.store", "hookcast.settings"]  # fmt: skip
    code = "import sys, hookcast.cli; print(sorted({m.split('.')[0] if not m.startswith('hookcast') else m for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert not loaded & set(heavy), loaded & set(heavy)
