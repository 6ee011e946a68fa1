"""Every log record of a test, formatted by hookcast's own formatters (text and JSON), and
the structured lines read back from them."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from hookcast import logs

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
_TEXT_LINE = re.compile(r"^\S+ \S+ (\w+) ([\w.]+): (\w+) (.*)$")


class Captured:
    def __init__(self) -> None:
        self.streams = {"text": io.StringIO(), "json": io.StringIO()}

    def text(self, fmt: str) -> str:
        return self.streams[fmt].getvalue()

    def lines(self, fmt: str, logger: str) -> list[dict[str, Any]]:
        """The structured lines (logs.Lines) of `logger` as written in `fmt`, each as a dict
        of its fields plus `message` (the kind)."""
        found = []
        for line in self.text(fmt).splitlines():
            if fmt == "json":
                entry = orjson.loads(line)
                if entry["logger"] == logger:
                    found.append(entry)
            elif (m := _TEXT_LINE.match(line)) and m.group(2) == logger:
                found.append({"message": m.group(3), **parse_logfmt(m.group(4))})
        return found


def parse_logfmt(text: str) -> dict[str, Any]:
    """`key=value ...` back to values: `-` None, digits int, a number float, quoted JSON."""
    fields: dict[str, Any] = {}
    for key, raw in _PAIR.findall(text):
        value: Any = raw
        if raw == "-":
            value = None
        elif raw.startswith('"'):
            value = orjson.loads(raw)
        elif re.fullmatch(r"-?\d+", raw):
            value = int(raw)
        elif re.fullmatch(r"-?\d+\.\d+", raw):
            value = float(raw)
        fields[key] = value
    return fields


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[Captured]:
    """Every record of every logger at `level` and above, through a text and a JSON handler
    with hookcast's formatters and its Redact filter, as `hookcast serve` writes them: on the
    root logger, and on each logger that does not hand its records to the root."""
    captured = Captured()
    handlers = []
    for fmt, stream in captured.streams.items():
        handler = logging.StreamHandler(stream)
        handler.addFilter(logs.Redact())
        handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
        handlers.append(handler)
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    levels = {logger: logger.level for logger in loggers}
    hookcast = logging.getLogger("hookcast")
    levels.setdefault(hookcast, hookcast.level)
    for logger in loggers:
        for handler in handlers:
            logger.addHandler(handler)
    for logger in levels:
        logger.setLevel(level)
    try:
        yield captured
    finally:
        for logger in loggers:
            for handler in handlers:
                logger.removeHandler(handler)
        for logger, old in levels.items():
            logger.setLevel(old)
