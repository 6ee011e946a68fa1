"""Test doubles: a fake host HTTP transport (the real one is the host's job)."""

from __future__ import annotations

import json

from hookcast.crmscript import HttpResponse, HttpTransportError

ALLOWED = ("api.example.com", "down.example.com")


class FakeTransport:
    """Echoes the request as JSON. Paths: /status/<n> answers with that status,
    host down.example.com fails in transport."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def request(self, method, url, headers, body, timeout, max_bytes):
        self.calls.append((method, url, headers, body, timeout, max_bytes))
        if "down.example.com" in url:
            raise HttpTransportError("connection refused")
        status = 200
        if "/status/" in url:
            status = int(url.rsplit("/status/", 1)[1].split("?")[0])
        payload = {
            "method": method,
            "url": url,
            "headers": [[k, v] for k, v in headers],
            "body": _text(body),
        }
        data = json.dumps(payload, separators=(",", ":")).encode()
        return HttpResponse(status, [("Content-Type", "application/json"), ("X-Test", "yes")], data)


def _text(body: bytes | None) -> str | None:
    """The body as UTF-8 text, or its bytes in hex when it is not UTF-8."""
    if body is None:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + body.hex()
