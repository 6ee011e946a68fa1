"""The public API the rest of hookcast calls: compile_script, check, run_script."""

from __future__ import annotations

import threading

import pytest

from hookcast.crmscript import (
    CompiledScript,
    CompileError,
    Diagnostic,
    HttpResponse,
    Limits,
    RunResult,
    check,
    compile_script,
    run_script,
)

from .fakes import FakeTransport


def test_limits_defaults_match_spec() -> None:
    lim = Limits()
    assert (lim.max_steps, lim.max_call_depth, lim.max_output, lim.max_seconds) == (
        1_000_000,
        256,
        1 << 20,
        10.0,
    )
    assert (lim.max_string, lim.max_include_depth, lim.max_http_requests) == (10_000_000, 16, 20)
    assert (lim.http_timeout, lim.max_http_response) == (10.0, 5 << 20)


def test_check_valid_and_invalid() -> None:
    assert check('printLine("x");') == []
    diags = check('Integer x = "s";\n')
    assert diags == [Diagnostic(1, 13, "TypeError", "cannot assign String to Integer")]


def test_compile_error_has_diagnostics() -> None:
    with pytest.raises(CompileError) as exc:
        compile_script("Integer x = ;")
    (d,) = exc.value.diagnostics
    assert (d.kind, d.line, d.column) == ("SyntaxError", 1, 13)


# §13: a compile reports every error it finds, each with its line and column
SEVERAL_ERRORS = """Integer a = "x";
printLine(undefinedVar);
if (1) { Integer c = true; }
Void n;
Integer b = n;
runProgram("ls");
addChatMessage(1, "a", 1, "b", 0, "");
printLine(a.toString());
"""


def test_check_reports_every_checking_error_with_line_and_column() -> None:
    assert [(d.line, d.column, d.kind) for d in check(SEVERAL_ERRORS)] == [
        (1, 13, "TypeError"),
        (2, 11, "NameError"),
        (3, 5, "TypeError"),
        (3, 22, "TypeError"),
        (4, 1, "TypeError"),  # `n` is then unknown, but that follows from it: not reported
        (6, 1, "UnsupportedFeature"),
        (7, 1, "UnsupportedFeature"),
    ]
    run = run_script(SEVERAL_ERRORS)  # a run reports the first
    assert run.error_line == "ERROR: TypeError: cannot assign String to Integer (line 1, column 13)"
    assert run.output == ""


def test_check_reports_every_syntax_error_with_line_and_column() -> None:
    source = 'Integer x = ;\nprintLine("ok");\nif (x { y(); }\nInteger z = 2147483649;\nfoo(\n'
    assert check(source) == [
        Diagnostic(1, 13, "SyntaxError", "unexpected ';'"),
        Diagnostic(3, 7, "SyntaxError", "unexpected '{'"),
        Diagnostic(4, 13, "TypeError", "integer literal 2147483649 does not fit 32 bits"),
        Diagnostic(5, 4, "SyntaxError", "unexpected end of text"),
    ]
    with pytest.raises(CompileError) as exc:
        compile_script(source)
    assert len(exc.value.diagnostics) == 4


def test_check_reports_errors_of_includes_and_of_the_script() -> None:
    texts = {"broken": "Integer y = ;\nInteger z = 1 +;\n", "typed": 'Integer y = "a";\nq = 1;\n'}
    diags = check('#include "broken";\n#include "typed";\nInteger x = "no";\n', include=texts.get)
    assert [(d.line, d.column, d.kind, d.message) for d in diags] == [
        (1, 13, "SyntaxError", "unexpected ';' (in include \"broken\")"),
        (2, 16, "SyntaxError", "unexpected ';' (in include \"broken\")"),
        (1, 13, "TypeError", 'cannot assign String to Integer (in include "typed")'),
        (2, 1, "NameError", "unknown variable 'q' (in include \"typed\")"),
        (3, 13, "TypeError", "cannot assign String to Integer"),
    ]


def test_errors_in_bodies_of_functions_and_structs_are_all_found() -> None:
    source = (
        'Integer f(Integer a) { return a + "s"; }\n'
        "Integer g(Void b) { return 1; }\n"
        "g(1);\n"
        'struct P { Integer n; Void m; Void set() { this.n = "x"; } };\n'
        "P p; p.m = 1; p.n = 2;\n"
        "printLine(f(1).toString());\n"
    )
    assert [(d.line, d.column, d.kind) for d in check(source)] == [
        (1, 31, "TypeError"),
        (2, 11, "TypeError"),  # the call of g and the use of p.m follow from these two
        (4, 23, "TypeError"),
        (4, 44, "TypeError"),
    ]


def test_error_count_is_bounded() -> None:
    source = "".join(f'Integer v{i} = "x";\n' for i in range(300))
    diags = check(source)
    assert len(diags) == 100 and diags[-1].line == 100


def test_compile_errors_produce_no_output() -> None:
    r = run_script('printLine("a");\nfoo();')
    assert r == RunResult("", False, "NameError", r.error_message, r.error_line)
    assert r.error_line == "ERROR: NameError: unknown function foo() (line 2, column 1)"


def test_compiled_scripts_are_cached_by_source_and_includes() -> None:
    texts = {"lib": 'String v = "one";'}
    src = '#include "lib";\nprintLine(v);'
    a = compile_script(src, include=texts.get)
    assert compile_script(src, include=texts.get) is a
    assert run_script(a).output == "one\n"
    texts["lib"] = 'String v = "two";'
    b = compile_script(src, include=texts.get)
    assert b is not a
    assert run_script(src, include=texts.get).output == "two\n"


def test_compiled_script_reused_across_runs_and_variables() -> None:
    c = compile_script('Integer n = getVariable("n").toInteger(); n++; printLine(n.toString());')
    assert isinstance(c, CompiledScript)
    assert [run_script(c, variables={"n": str(i)}).output for i in range(3)] == [
        "1\n",
        "2\n",
        "3\n",
    ]


def test_runs_in_parallel_threads() -> None:
    c = compile_script(
        "Integer f(Integer n) { if (n < 2) return n; return f(n - 1) + f(n - 2); }\n"
        'printLine(f(getVariable("n").toInteger()).toString());'
    )
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = run_script(c, variables={"n": str(10 + i % 3)}).output

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {10: "55\n", 11: "89\n", 12: "144\n"}
    assert all(results[i] == expected[10 + i % 3] for i in range(8))


def test_error_fields_and_location_use_script_name() -> None:
    r = run_script('printLine("a");\nthrow "boom";', name="handler")
    assert (r.success, r.output, r.error_kind, r.error_message) == (
        False,
        "a\n",
        "GeneralException",
        "boom",
    )
    assert r.error_line == "ERROR: GeneralException: boom"
    assert r.error_location == "handler:2"


def test_exit_with_message_is_success() -> None:
    r = run_script('print("x"); exitWithMessage("bye"); print("y");')
    assert (r.success, r.output, r.exit_message) == (True, "x", "bye")


def test_http_without_transport_refuses_every_host() -> None:
    src = 'HTTP h; h.get("https://api.example.com/"); printLine(h.hasError().toString() + " " + h.getErrorMessage());'
    r = run_script(src, http=None, http_allow_hosts=["api.example.com"])
    assert r.output == "true host 'api.example.com' is not on the tenant's allow-list\n"


def test_http_allow_list_is_empty_by_default() -> None:
    fake = FakeTransport()
    r = run_script(
        'HTTP h; h.get("https://api.example.com/"); printLine(h.hasError().toString());', http=fake
    )
    assert r.output == "true\n"
    assert fake.calls == []


def test_http_allow_list_matches_host_exactly_case_insensitive() -> None:
    fake = FakeTransport()
    src = (
        "HTTP h;\n"
        'h.get("https://API.Example.COM:8443/x"); print(h.hasError().toString());\n'
        'h.get("https://sub.api.example.com/x"); print(h.hasError().toString());\n'
        'h.get("https://api.example.com.evil.org/x"); print(h.hasError().toString());\n'
        'h.get("https://user@evil.org/?api.example.com"); print(h.hasError().toString());\n'
    )
    r = run_script(src, http=fake, http_allow_hosts=["Api.Example.Com"])
    assert r.output == "falsetruetruetrue"
    assert [c[1] for c in fake.calls] == ["https://API.Example.COM:8443/x"]


def test_http_transport_gets_limits() -> None:
    fake = FakeTransport()
    lim = Limits(http_timeout=3.0, max_http_response=1234)
    src = 'HTTP h; h.setOption("timeout", "60"); h.get("http://api.example.com/a"); h.setOption("timeout", "1"); h.get("http://api.example.com/b");'
    run_script(src, http=fake, http_allow_hosts=["api.example.com"], limits=lim)
    (m1, _, _, _, t1, max1), (_, _, _, _, t2, _) = fake.calls
    assert (m1, max1) == ("GET", 1234)
    assert 2.9 < t1 <= 3.0 and 0.9 < t2 <= 1.0


def test_http_oversized_response_is_an_error() -> None:
    class Big:
        def request(self, method, url, headers, body, timeout, max_bytes):
            return HttpResponse(200, [], b"x" * (max_bytes + 1))

    src = 'HTTP h; Byte[] b = h.get("http://a.example/"); printLine(h.hasError().toString() + b.length().toString());'
    r = run_script(
        src, http=Big(), http_allow_hosts=["a.example"], limits=Limits(max_http_response=10)
    )
    assert r.output == "true0\n"


def test_faulty_transport_never_breaks_the_run() -> None:
    class Broken:
        def request(self, *a):
            raise ValueError("oops")

    src = 'HTTP h; h.get("http://a.example/"); printLine(h.getErrorMessage());'
    r = run_script(src, http=Broken(), http_allow_hosts=["a.example"])
    assert r.success and r.output == "transport failure: ValueError\n"


def test_run_script_never_raises_on_odd_input() -> None:
    for src in ("", "\x00", "#include", "}", "%EJSCRIPT_START%", "String s = '\\", "/*"):
        r = run_script(src)
        assert isinstance(r, RunResult)


def test_include_callback_errors_are_include_errors() -> None:
    def bad(name: str) -> str:
        raise OSError("db down")

    r = run_script('#include "x";', include=bad)
    assert r.error_kind == "IncludeError"


def test_recursion_limit_far_above_python_default() -> None:
    src = "Integer d(Integer n) { if (n == 0) return 0; return 1 + d(n - 1); }\nprintLine(d(5000).toString());"
    r = run_script(src, limits=Limits(max_call_depth=6000))
    assert r.output == "5000\n"
