"""Frames between the parent and a sandbox worker: a 4-byte big-endian length, then one JSON
object. JSON, not pickle: the parent must never execute what a (possibly subverted) worker
sends. Bytes travel as base64 text."""

from __future__ import annotations

import base64
import struct
from dataclasses import asdict, fields
from typing import Any, BinaryIO

import orjson

from ..crmscript import Diagnostic, Limits, RunResult

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a run's output is at most a few MB; anything bigger is a broken peer

Message = dict[str, Any]


def encode(message: Message) -> bytes:
    body = orjson.dumps(message)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    message = orjson.loads(body)
    if not isinstance(message, dict):
        raise ValueError("a frame must hold a JSON object")
    return message


def frame_length(header: bytes) -> int:
    (n,) = HEADER.unpack(header)
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes is too long")
    return int(n)


def read_frame(stream: BinaryIO) -> Message | None:
    """The next frame from a blocking stream; None at its end."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    n = frame_length(header)
    body = stream.read(n)
    if len(body) < n:
        return None
    return decode(body)


def write_frame(stream: BinaryIO, message: Message) -> None:
    stream.write(encode(message))
    stream.flush()


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def limits_to_dict(limits: Limits) -> Message:
    return asdict(limits)


def limits_from_dict(data: Message) -> Limits:
    known = {f.name for f in fields(Limits)}
    return Limits(**{k: v for k, v in data.items() if k in known})


def result_to_dict(result: RunResult) -> Message:
    return asdict(result)


def result_from_dict(data: Message) -> RunResult:
    known = {f.name for f in fields(RunResult)}
    return RunResult(**{k: v for k, v in data.items() if k in known})


def diagnostics_to_list(items: list[Diagnostic]) -> list[Message]:
    return [asdict(d) for d in items]


def diagnostics_from_list(items: list[Message]) -> list[Diagnostic]:
    return [Diagnostic(**d) for d in items]
