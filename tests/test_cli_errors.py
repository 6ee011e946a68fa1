"""Errors a person can act on (issue 17): every configuration, connection and usage error of
a command is one or two lines naming the variable or flag and its value (secrets masked) and
what to do; exit status 2 for usage, 1 for runtime; a traceback only with --debug. Unknown
HOOKCAST_* variables and TOML keys are warnings naming the closest setting. Commands other
than serve, worker and migrate never create a database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from support.databases import (
    POSTGRES_URL,
    migrated_database_url,
    needs_postgres,
    new_postgres_url,
)
from typer.testing import CliRunner

from hookcast.cli import app


def run(*args: str, **env: str | None) -> tuple[int, list[str], str]:
    """`hookcast ARGS` in this process: (exit status, stderr lines, stdout)."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **env})
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    return result.exit_code, result.stderr.splitlines(), result.stdout


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def db(tmp_path: Path) -> str:
    return migrated_database_url(tmp_path)


def test_a_bad_variable_names_itself_its_value_and_the_fix(db: str) -> None:
    code, err, out = run("webhooks", "list", "--db", db, HOOKCAST_RETRY_DELAYS="abc")
    assert code == 2 and out == ""
    assert err == [
        "error: HOOKCAST_RETRY_DELAYS='abc' is not valid: could not convert string to float: 'abc'",
        "  Set HOOKCAST_RETRY_DELAYS to comma-separated numbers of seconds, e.g. 1,4, or unset "
        "it for the default (1.0,4.0).",
    ]


def test_a_bad_flag_value_names_the_flag(db: str) -> None:
    code, err, _ = run("worker", "--db", db, "--concurrency", "0")
    assert code == 2
    assert (
        err[0]
        == "error: --concurrency='0' is not valid: Input should be greater than or equal to 1"
    )


def test_a_secret_is_masked(db: str) -> None:
    code, err, _ = run(
        "keys", "list", "--db", db, HOOKCAST_SMTP_PORT="x", HOOKCAST_SMTP_PASSWORD="hunter2"
    )
    assert code == 2 and err[0].startswith("error: HOOKCAST_SMTP_PORT='x' is not valid")
    code, err, _ = run(
        "keys", "list", "--db", db, HOOKCAST_SMTP_PASSWORD="hunter2", HOOKCAST_LOG_FORMAT="xml"
    )
    assert code == 2 and "hunter2" not in "\n".join(err)


def test_unreachable_postgresql_is_one_line_with_the_password_masked() -> None:
    url = f"postgresql://hookcast:sekrit@127.0.0.1:{closed_port()}/hooks"
    for command in (["keys", "list"], ["migrate"]):
        code, err, _ = run(*command, "--db", url)
        assert code == 1 and len(err) == 2
        assert err[0].startswith(
            f"error: cannot connect to the database at postgresql://hookcast:***@127.0.0.1:"
            f"{url.split(':')[3].split('/')[0]}/hooks (--db): connection failed:"
        ), err
        assert "sekrit" not in "\n".join(err)
        assert err[1] == (
            "  Check that the server is running and that the URL (host, port, user, password) is right."
        )


def test_serve_with_a_missing_ca_bundle(tmp_path: Path, db: str) -> None:
    missing = tmp_path / "nope.pem"
    code, err, _ = run("serve", "--db", db, HOOKCAST_CA_BUNDLE=str(missing))
    assert code == 2
    assert err == [
        f"error: HOOKCAST_CA_BUNDLE='{missing}' cannot be read: [Errno 2] No such file or directory",
        "  Point HOOKCAST_CA_BUNDLE at a readable PEM file of CA certificates, or unset it to "
        "trust the system's CAs.",
    ]


def test_a_postgresql_url_without_its_driver_says_what_to_install(tmp_path: Path) -> None:
    # A real process in which psycopg cannot be imported (None in sys.modules: ImportError).
    code = (
        "import sys; sys.modules['psycopg'] = None; from hookcast.cli import main; "
        "sys.argv = ['hookcast', 'keys', 'list']; main()"
    )
    env = {**os.environ, "HOOKCAST_DATABASE_URL": "postgresql://u:pw@127.0.0.1/x"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "error: HOOKCAST_DATABASE_URL is a PostgreSQL URL but its driver is not installed"
    )
    assert lines[1:] == ["  Install it: pip install 'hookcast[postgres]'"]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_named_config_file_that_does_not_exist(tmp_path: Path, db: str) -> None:
    code, err, _ = run("keys", "list", "--db", db, HOOKCAST_CONFIG=str(tmp_path / "hc.toml"))
    assert code == 2
    assert err == [
        f"error: HOOKCAST_CONFIG='{tmp_path / 'hc.toml'}': no such file",
        "  Give the path of an existing TOML file, or unset HOOKCAST_CONFIG.",
    ]


def test_a_bad_value_in_the_config_file_names_the_key_and_the_file(tmp_path: Path, db: str) -> None:
    toml = tmp_path / "hc.toml"
    toml.write_text("cycles = 0\n")
    code, err, _ = run("keys", "list", "--db", db, HOOKCAST_CONFIG=str(toml))
    assert code == 2
    assert err[0] == (
        f"error: cycles in {toml}: cycles='0' is not valid: Input should be greater than or equal to 1"
    )


def test_unknown_variables_and_toml_keys_are_warnings_naming_the_closest(
    tmp_path: Path, db: str
) -> None:
    toml = tmp_path / "hc.toml"
    toml.write_text("atempt_timeout = 5\n")
    code, err, out = run(
        "keys", "list", "--db", db, "--json",
        HOOKCAST_RETRY_DELAY="1,2", HOOKCAST_ZZZ="1", HOOKCAST_CONFIG=str(toml),
    )  # fmt: skip
    assert code == 0 and out.strip() == "[]"
    assert err == [
        "warning: HOOKCAST_RETRY_DELAY is not a hookcast setting; did you mean HOOKCAST_RETRY_DELAYS?",
        "warning: HOOKCAST_ZZZ is not a hookcast setting; `hookcast settings` lists them all.",
        f"warning: 'atempt_timeout' in {toml} is not a hookcast setting; did you mean attempt_timeout?",
    ]


def test_debug_shows_the_traceback(db: str) -> None:
    result = CliRunner().invoke(
        app, ["--debug", "webhooks", "list", "--db", db], env={"HOOKCAST_CYCLES": "x"}
    )
    assert result.exit_code == 1 and result.exception is not None  # raised, not said
    assert type(result.exception).__name__ == "CliError"
    result = CliRunner().invoke(
        app,
        ["webhooks", "list", "--db", db],
        env={"HOOKCAST_CYCLES": "x", "HOOKCAST_LOG_LEVEL": "DEBUG"},
    )
    assert type(result.exception).__name__ == "CliError"


def test_usage_errors_exit_2_and_runtime_errors_1(db: str) -> None:
    code, err, _ = run(
        "signal", "contact.changed", "5", "--tenant", "T", "--data", "[1]", "--db", db
    )
    assert (code, err[0]) == (2, "error: --data='[1]' is not a JSON object")
    code, err, _ = run("keys", "revoke", "77", "--db", db)
    assert (code, err[0]) == (1, "error: there is no active key 77")
    code, err, _ = run("keys", "list", "--db", "not a url")
    assert code == 2 and err[0].startswith("error: --db='not a url' is not a database URL")


# ---- no database is created by a command that only uses one -----------------------------

USING_COMMANDS = [
    ["keys", "list"],
    ["keys", "create", "--tenant", "T", "--associate-id", "1"],
    ["keys", "revoke", "1"],
    ["webhooks", "list"],
    ["workers"],
    ["signal", "contact.changed", "1", "--tenant", "T"],
]


@pytest.mark.parametrize("command", USING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_mistyped_sqlite_path_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "typo" / "deeper" / "hookcsat.db"
    url = f"sqlite:///{path}"
    code, err, out = run(*command, "--db", url)
    assert code == 1 and out == ""
    assert err == [
        f"error: no hookcast database at {url} (--db): {path} does not exist",
        "  Check the path, or create one there with `hookcast migrate`.",
    ]
    assert list(tmp_path.iterdir()) == []  # no file, no folder


def test_the_default_database_is_named_as_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err, _ = run("keys", "list", HOOKCAST_DATABASE_URL=None)
    assert code == 1
    assert err[0] == (
        "error: no hookcast database at sqlite:///./hookcast.db (the default; set --db or "
        "HOOKCAST_DATABASE_URL): ./hookcast.db does not exist"
    )
    assert list(tmp_path.iterdir()) == []


@needs_postgres
@pytest.mark.parametrize("command", USING_COMMANDS[:2], ids=lambda c: " ".join(c[:2]))
def test_an_empty_postgresql_database_stays_unmigrated(command: list[str]) -> None:
    url = new_postgres_url()
    code, err, _ = run(*command, HOOKCAST_DATABASE_URL=url)
    assert code == 1
    assert err == [
        f"error: no hookcast database at {url} (HOOKCAST_DATABASE_URL)",
        "  Check the URL, or create one there with `hookcast migrate`.",
    ]
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@needs_postgres
def test_a_missing_postgresql_database() -> None:
    base = POSTGRES_URL.rsplit("/", 1)[0]
    code, err, _ = run("keys", "list", "--db", f"{base}/hc_no_such_database")
    assert code == 1
    assert err[0].startswith(f"error: no hookcast database at {base}/hc_no_such_database (--db):")
    assert 'database "hc_no_such_database" does not exist' in err[0]


def test_an_older_schema_asks_for_migrate(tmp_path: Path) -> None:
    url = migrated_database_url(tmp_path)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE hookcast_alembic_version SET version_num = '0001'")
    engine.dispose()
    code, err, _ = run("webhooks", "list", "--db", url)
    assert code == 1 and err[0].startswith(
        f"error: the database at {url} has an older schema (0001"
    )
    assert err[1] == "  Bring it up to date with `hookcast migrate` (or start `hookcast serve`)."


def test_serve_on_a_taken_port_says_so_before_creating_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'new.db'}"
        code, err, out = run("serve", "--port", str(port), "--db", url)
    assert code == 1 and out == ""
    assert err == [
        f"error: cannot listen on 127.0.0.1:{port} (--host, --port or HOOKCAST_HOST, "
        "HOOKCAST_PORT): Address already in use",
        "  Stop what listens there, or choose another port with --port.",
    ]
    assert list(tmp_path.iterdir()) == []  # no database, no first key
