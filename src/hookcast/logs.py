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
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

__all__ = ["LOGGERS", "SERVER_LOGGERS", "JsonFormatter", "Redact", "configure", "protect", "redact"]

_STANDARD = set(vars(logging.makeLogRecord({})))

# Every logger hookcast logs to; each carries the Redact filter (a logger's filters do not
# apply to its children's records, so each is named). tests/test_redaction.py checks that no
# hookcast logger is missing here.
LOGGERS = (
    "hookcast",
    "hookcast.api",
    "hookcast.dispatch",
    "hookcast.dns",
    "hookcast.mail",
    "hookcast.sandbox",
)
# uvicorn logs an exception that escaped the application ("Exception in ASGI application").
SERVER_LOGGERS = ("uvicorn", "uvicorn.error")

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
    # hookcast API keys (hc_ + 43 url-safe characters) and hex digests (a key's SHA-256)
    (re.compile(r"\bhc_[A-Za-z0-9_-]{16,}"), f"hc_{HIDDEN}"),
    (re.compile(r"\b[0-9a-fA-F]{40,}\b"), HIDDEN),
]


def redact(text: str) -> str:
    """`text` without the values that may be secrets (see the module's docstring)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Scrubs a record in place, once: its message (arguments merged in) and its traceback,
    which formatters then take from `exc_text` instead of formatting it again."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "hookcast_redacted", False):
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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {
                k: v
                for k, v in vars(record).items()
                if k not in _STANDARD and k != "hookcast_redacted"
            }
        )
        if record.exc_text:  # scrubbed by Redact
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    # Also on the handler: whatever reaches it from a logger without the filter.
    handler.addFilter(_REDACT)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hookcast")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
