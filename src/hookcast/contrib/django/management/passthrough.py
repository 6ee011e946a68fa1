"""`manage.py hookcast_serve|hookcast_worker [hookcast's options]`: hookcast's own `serve`
and `worker` commands on the Django project's database, with HOOKCAST['SETTINGS'] as their
settings (HOOKCAST_* environment variables still win)."""

from __future__ import annotations

import os
from typing import Any

from ..conf import conf, database_url


def environment() -> dict[str, str]:
    """The HOOKCAST_* variables the project's settings give."""
    values: dict[str, str] = {"HOOKCAST_DATABASE_URL": database_url()}
    for key, value in conf().settings.items():
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        values[f"HOOKCAST_{key.upper()}"] = str(value)
    return values


def run(command: str, args: list[str]) -> None:
    from ....cli import app

    for key, value in environment().items():
        os.environ.setdefault(key, value)
    app([command, *args], prog_name=f"manage.py hookcast_{command}")


class PassThrough:
    """Mixed into a BaseCommand: hookcast parses the arguments, not Django."""

    hookcast_command = ""

    def run_from_argv(self, argv: list[str]) -> None:
        run(self.hookcast_command, argv[2:])

    def handle(self, *args: Any, **options: Any) -> None:
        run(self.hookcast_command, [str(a) for a in args])
