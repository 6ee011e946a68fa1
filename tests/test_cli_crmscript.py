"""`hookcast crmscript run|check`: scripts run locally in the sandbox, includes from files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hookcast.cli.crmscript import crmscript_app

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(crmscript_app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    (tmp_path / "greetings.crmscript").write_text(
        'String greet(String who) { return "Hello, " + who + "!"; }\n', encoding="utf-8"
    )
    (tmp_path / "main.crmscript").write_text(
        '#include "greetings";\n'
        'printLine(greet(getVariable("who")));\n'
        'printLine("pk=" + getVariable("PrimaryKey") + " missing=[" + getVariable("nope") + "]");\n',
        encoding="utf-8",
    )
    return tmp_path


def test_help_names_both_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0 and "run" in result.output and "check" in result.output
    assert "--include-dir" in invoke("run", "--help").output
    assert "--vars" in invoke("run", "--help").output


def test_run_prints_the_output_with_variables_and_includes(scripts: Path) -> None:
    variables = scripts / "vars.json"
    variables.write_text(json.dumps({"who": "Ada", "PrimaryKey": 18}), encoding="utf-8")
    result = invoke("run", scripts / "main.crmscript", "--vars", variables)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello, Ada!\npk=18 missing=[]\n"


def test_run_finds_includes_in_another_directory(scripts: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "greetings.crmscript").write_text(
        'String greet(String who) { return "Hi " + who; }', encoding="utf-8"
    )
    result = invoke("run", scripts / "main.crmscript", "--include-dir", elsewhere)
    assert result.exit_code == 0 and result.stdout.startswith("Hi \n")


def test_runtime_failure_ends_with_the_error_line_and_status_1(tmp_path: Path) -> None:
    path = tmp_path / "fails.crmscript"
    path.write_text('print("partial");\nthrow "bad status";\n', encoding="utf-8")
    result = invoke("run", path)
    assert result.exit_code == 1
    assert result.stdout == "partial\nERROR: GeneralException: bad status\n"
    assert result.stdout.splitlines()[-1] == "ERROR: GeneralException: bad status"


def test_compile_failure_in_run_and_in_check(tmp_path: Path) -> None:
    path = tmp_path / "broken.crmscript"
    path.write_text('printLine("never");\nInteger x = "text";\n', encoding="utf-8")
    ran = invoke("run", path)
    assert ran.exit_code == 1
    assert ran.stdout == "ERROR: TypeError: cannot assign String to Integer (line 2, column 13)\n"
    checked = invoke("check", path)
    assert checked.exit_code == 1
    assert checked.stdout == f"{path}:2:13: TypeError: cannot assign String to Integer\n"


def test_check_lists_every_compile_error_with_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "lib.crmscript").write_text('Integer fromLib = "x";\n', encoding="utf-8")
    path = tmp_path / "several.crmscript"
    path.write_text(
        '#include "lib";\n'
        'Integer a = "x";\n'
        "printLine(undefinedVar);\n"
        "resetChat(1);\n"
        'printLine("fine");\n',
        encoding="utf-8",
    )
    checked = invoke("check", path)
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == [
        f'{path}:1:19: TypeError: cannot assign String to Integer (in include "lib")',
        f"{path}:2:13: TypeError: cannot assign String to Integer",
        f"{path}:3:11: NameError: unknown variable 'undefinedVar'",
        f"{path}:4:1: UnsupportedFeature: resetChat() is not supported in this sandbox",
    ]
    ran = invoke("run", path)  # a run stops at the first
    assert ran.exit_code == 1 and ran.stdout == (
        'ERROR: TypeError: cannot assign String to Integer (in include "lib") (line 1, column 19)\n'
    )
    syntax = tmp_path / "syntax.crmscript"
    syntax.write_text("Integer x = ;\nprintLine(1 2);\nInteger y = 2147483649;\n", encoding="utf-8")
    checked = invoke("check", syntax)
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == [
        f"{syntax}:1:13: SyntaxError: unexpected ';'",
        f"{syntax}:2:13: SyntaxError: unexpected '2'",
        f"{syntax}:3:13: TypeError: integer literal 2147483649 does not fit 32 bits",
    ]


def test_check_passes_a_valid_script_with_includes(scripts: Path) -> None:
    result = invoke("check", scripts / "main.crmscript")
    assert result.exit_code == 0 and result.stdout == f"{scripts / 'main.crmscript'}: compiles\n"


def test_includes_never_leave_the_include_directory(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "secret.crmscript").write_text('printLine("secret");', encoding="utf-8")
    path = inner / "main.crmscript"
    for name in ("../secret", "/etc/passwd", "..", "sub/x"):
        path.write_text(f'#include "{name}";\n', encoding="utf-8")
        result = invoke("check", path)
        assert result.exit_code == 1 and "IncludeError" in result.stdout, name
    missing = invoke("run", path)
    assert missing.stdout.splitlines()[-1].startswith("ERROR: IncludeError: ")


def test_http_is_refused_locally(tmp_path: Path) -> None:
    path = tmp_path / "http.crmscript"
    path.write_text(
        'HTTP h; h.get("https://chat.example.com/");\n'
        'printLine(h.hasError().toString() + ": " + h.getErrorMessage());',
        encoding="utf-8",
    )
    result = invoke("run", path)
    assert result.exit_code == 0
    assert result.stdout == "true: host 'chat.example.com' is not on the tenant's allow-list\n"


def test_limits_apply(tmp_path: Path) -> None:
    path = tmp_path / "loop.crmscript"
    path.write_text("while (true) { }", encoding="utf-8")
    result = invoke("run", path)
    assert result.exit_code == 1
    assert result.stdout == "ERROR: LimitExceeded: more than 1000000 statements executed\n"


def test_bad_arguments_exit_2(tmp_path: Path, scripts: Path) -> None:
    main = scripts / "main.crmscript"
    assert invoke("run", tmp_path / "absent.crmscript").exit_code == 2
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]", encoding="utf-8")
    assert invoke("run", main, "--vars", not_object).exit_code == 2
    not_json = tmp_path / "bad.json"
    not_json.write_text("{", encoding="utf-8")
    assert invoke("run", main, "--vars", not_json).exit_code == 2
    binary = tmp_path / "binary.crmscript"
    binary.write_bytes(b"\xff\xfe\x00")
    assert invoke("check", binary).exit_code == 2
