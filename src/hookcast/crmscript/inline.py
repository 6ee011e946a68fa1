"""The %EJSCRIPT_START% inline wrapper (§12): text segments become print() calls. Line
numbers are kept: every segment adds as many line breaks as it contained."""

from __future__ import annotations

from .errors import ScriptSyntaxError

START = "%EJSCRIPT_START%"
END = "%EJSCRIPT_END%"


def _literal(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + out + '"'


def unwrap(text: str) -> str:
    if not text.startswith(START):
        return text
    body = text.rstrip()
    if not body.endswith(END):
        raise ScriptSyntaxError(f"a script starting with {START} must end with {END}", 1, 1)
    body = body[len(START) : -len(END)]
    out: list[str] = []
    pos = 0
    while pos < len(body):
        start = body.find("<%", pos)
        if start < 0:
            start = len(body)
        seg = body[pos:start]
        if seg:
            out.append(f"print({_literal(seg)});" + "\n" * seg.count("\n"))
        if start >= len(body):
            break
        end = body.find("%>", start + 2)
        if end < 0:
            line = body.count("\n", 0, start) + 1
            raise ScriptSyntaxError("'<%' without a closing '%>'", line, 1)
        out.append(body[start + 2 : end])
        pos = end + 2
    return "".join(out)
