"""Logging for the `serve` and `worker` processes: one line per record, as text or JSON.

Log calls pass ids, counts and error texts, never secrets, keys or payloads. Error texts
come from libraries, though, and some carry values: SQLAlchemy appends a failed
statement's parameters (off on our engines: `hide_parameters`), PostgreSQL a failing row
(`DETAIL: Failing row contains (...)`), an HTTP library an Authorization header. `Redact`
scrubs every record of hookcast's loggers (and, in `serve`, uvicorn's) before any handler
formats it: its message and its traceback.

The same filter drops a record whose exception is an outage already being reported
(`reported`, see hookcast.outage): one line per outage, not one traceback per attempt,
whichever loop (ours, the mail outbox's, uvicorn's) logs the failure.

Structured lines (one per delivery attempt on `hookcast.attempts`, one per API request on
`hookcast.access`) are logged as `Lines`: rendered `kind key=value ...` in text, as
top-level keys in JSON, and only by the formatter that prints them. The attempts of a
written batch share one record (one handler call, one write), which is what keeps a line
per attempt cheap. Their values are ids, numbers and names; the one free text among them (an
attempt's error) is scrubbed when the line is made, so the filter has nothing to do for
them. docs/observability.md lists them.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "ACCESS",
    "ATTEMPTS",
    "LOGGERS",
    "SERVER_LOGGERS",
    "JsonFormatter",
    "Lines",
    "Redact",
    "TextFormatter",
    "adopt_server_loggers",
    "configure",
    "logfmt",
    "protect",
    "quoted",
    "redact",
]

_STANDARD = set(vars(logging.makeLogRecord({})))
# Attributes of records that are not part of a line: ours, and uvicorn's coloured copy of
# its message.
_NOT_FIELDS = {"hookcast_redacted", "color_message"}

# Every logger hookcast logs to; each carries the Redact filter (a logger's filters do not
# apply to its children's records, so each is named). tests/test_redaction.py checks that no
# hookcast logger is missing here.
LOGGERS = (
    "hookcast",
    "hookcast.access",
    "hookcast.api",
    "hookcast.attempts",
    "hookcast.dispatch",
    "hookcast.dns",
    "hookcast.mail",
    "hookcast.recovery",
    "hookcast.sandbox",
)
# uvicorn logs an exception that escaped the application ("Exception in ASGI application"),
# its start and stop under "uvicorn.error" (which hands its records to "uvicorn"), and
# requests under "uvicorn.access" (off where `configure` ran: hookcast.access replaces it).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

# One line per delivery attempt and per API request (docs/observability.md).
ATTEMPTS = logging.getLogger("hookcast.attempts")
ACCESS = logging.getLogger("hookcast.access")

HIDDEN = "[hidden]"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # SQLAlchemy: "[parameters: (...)]", should an engine ever be made without hide_parameters
    (re.compile(r"\[parameters: .*"), f"[parameters: {HIDDEN}]"),
    # PostgreSQL: the row or key values of a constraint violation, a trigger's DETAIL
    (re.compile(r"(?m)^(\s*DETAIL:\s*).*$"), rf"\g<1>{HIDDEN}"),
    (re.compile(r"Failing row contains \(.*"), f"Failing row contains {HIDDEN}"),
    (re.compile(r"(Key \(.*?\)=)\(.*?\)"), rf"\g<1>{HIDDEN}"),
    # HTTP credentials, wherever a library put them
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;}\]]+"), rf"\g<1> {HIDDEN}"),
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\]\n]+"),
        rf"\g<1>{HIDDEN}",
    ),
    # A password in a URL (a database URL in a driver's message): scheme://user:***@host
    (re.compile(r"(\w://[^:/@\s]*:)[^@\s/]+@"), rf"\g<1>{HIDDEN}@"),
    # hookcast API keys (hc_ + 43 url-safe characters) and hex digests (a key's SHA-256)
    (re.compile(r"\bhc_[A-Za-z0-9_-]{16,}"), f"hc_{HIDDEN}"),
    (re.compile(r"\b[0-9a-fA-F]{40,}\b"), HIDDEN),
]


# What text must contain for any pattern above to match: text without any of these (every
# request path of the access log, say) is returned after a few substring checks instead of
# eight regular expression scans (2 µs instead of 21 for a path).
_MARKS = (
    "parameters",
    "detail",
    "failing row",
    "key (",
    "bearer",
    "basic",
    "authorization",
    "://",
    "hc_",
)
_HEX_RUN = re.compile(r"[0-9a-fA-F]{40}")


def redact(text: str) -> str:
    """`text` without the values that may be secrets (see the module's docstring)."""
    lowered = text.lower()
    if not any(mark in lowered for mark in _MARKS) and _HEX_RUN.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """To whatever sys.stderr is when a record is written, as logging's last-resort handler
    does: a process (or a test run) that replaces sys.stderr later still gets the lines,
    never a write to the stream it closed."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class Lines:
    """The message of structured lines, one per row: what they are about (`kind`) and each
    row's fields.

    Rendered only when a handler formats the record: `kind key=value ...` per row by `str()`
    (text; None as `-`, a float with one decimal, text with spaces, quotes or `=` quoted as
    JSON), or one JSON object per row by JsonFormatter. Values must be free of secrets
    already (see `redact`)."""

    __slots__ = ("kind", "render", "rows")

    def __init__(
        self,
        kind: str,
        rows: Sequence[Mapping[str, Any]],
        render: Callable[[Mapping[str, Any]], str] | None = None,
    ) -> None:
        """`render`: a row's text after the kind, faster than the general `logfmt` where a
        kind's fields are known (the attempt line's are)."""
        self.kind = kind
        self.rows = rows
        self.render = render or logfmt

    def __str__(self) -> str:
        head, render = self.kind + " ", self.render
        return "\n".join([head + render(row) for row in self.rows])


def logfmt(row: Mapping[str, Any]) -> str:
    """`key=value ...` (see Lines)."""
    return " ".join([f"{k}={_text(v)}" for k, v in row.items()])


def quoted(text: str) -> str:
    """`text` as a logfmt value: as it is, or JSON-quoted if it has spaces, quotes or `=`."""
    return text if text and not _NEEDS_QUOTES(text) else orjson.dumps(text).decode()


_NEEDS_QUOTES = re.compile(r'[\s"=\\]').search


def _text(value: Any) -> str:
    cls = value.__class__
    if cls is str:
        return quoted(value)
    if cls is int:
        return str(value)
    if value is None:
        return "-"
    if cls is float:
        return f"{value:.1f}"
    return _text(str(value))


class Redact(logging.Filter):
    """Scrubs a record in place, once: its message (arguments merged in) and its traceback,
    which formatters then take from `exc_text` instead of formatting it again."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "hookcast_redacted", False):
            return True
        if record.msg.__class__ is Lines and not record.exc_info:
            record.hookcast_redacted = True  # scrubbed when made (Lines)
            return True
        if record.exc_info and getattr(record.exc_info[1], "reported", False):
            return False
        message = record.getMessage()
        scrubbed = redact(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.hookcast_redacted = True
        return True


_REDACT = Redact()


def protect(*names: str) -> None:
    """Put the Redact filter on these loggers (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


protect(*LOGGERS)


def _utc(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-12-07T09:46:21.123Z."""
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        ".%03dZ" % ((created - seconds) * 1000)
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, then the record's own
    fields (`extra=`); for `Lines`, one object per row with the row's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        msg = record.msg
        if msg.__class__ is Lines and not record.exc_info:
            entry["message"] = msg.kind
            dumps = orjson.dumps
            return "\n".join([dumps({**entry, **row}, default=str).decode() for row in msg.rows])
        entry["message"] = record.getMessage()
        entry.update(
            {k: v for k, v in vars(record).items() if k not in _STANDARD and k not in _NOT_FIELDS}
        )
        if record.exc_text:  # scrubbed by Redact
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger: message`; for `Lines`, that head before every row."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        if msg.__class__ is not Lines or record.exc_info or len(msg.rows) < 2:
            return super().format(record)
        head = f"{self.formatTime(record)} {record.levelname} {record.name}: "
        return head + str(msg).replace("\n", "\n" + head)


_handler: logging.Handler | None = None


def configure(fmt: str = "text", level: str = "INFO") -> None:
    """hookcast's and uvicorn's loggers write to stderr, each record one line in `fmt`
    (text or json)."""
    global _handler
    handler = _Stderr()
    # Also on the handler: whatever reaches it from a logger without the filter.
    handler.addFilter(_REDACT)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    _handler = handler
    root = logging.getLogger("hookcast")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    adopt_server_loggers()


def adopt_server_loggers() -> None:
    """Route uvicorn's loggers through the handler of `configure` (nothing when it was not
    called: an application embedding the API keeps its own logging).

    `uvicorn.run` configures its loggers (dictConfig, unless given `log_config=None`) after
    `configure` ran, replacing their handlers but not their filters; so `_Adopt`, a filter
    on each, puts ours back at uvicorn's first record, before that record is handled."""
    if _handler is None:
        return
    protect(*SERVER_LOGGERS)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _ADOPT not in logger.filters:
            logger.addFilter(_ADOPT)
    server = logging.getLogger("uvicorn")
    server.handlers[:] = [_handler]
    server.propagate = False
    error = logging.getLogger("uvicorn.error")
    error.handlers[:] = []  # its records go to "uvicorn"'s handler
    error.propagate = True
    # hookcast.access replaces uvicorn's access log, which knows neither the API key nor the
    # latency; uvicorn writes it whenever its logger has a handler, whatever `access_log`.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False


class _Adopt(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _handler is not None and (
            logging.getLogger("uvicorn").handlers != [_handler]
            or logging.getLogger("uvicorn.access").handlers
        ):
            adopt_server_loggers()
        return True


_ADOPT = _Adopt()
