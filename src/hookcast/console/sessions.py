"""Console sign-in: a server-side session per signed-in browser, named by an HttpOnly,
SameSite=Strict cookie, holding the API key it signed in with and its CSRF token.

The key stays on the server; every request authenticates it again (through the API's key
cache, `keys.KeyCache`), so a revoked key or a changed role takes effect within half a
second. Sessions live in this process's
memory: signing in again is the answer to a restart."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "hookcast_console"
IDLE_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000  # the oldest go first beyond this


@dataclass
class Session:
    key: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)
    flash: str | None = None  # one message for the next page shown

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def open(self, key: str) -> tuple[str, Session]:
        self._expire()
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id, key=lambda sid: self._by_id[sid].seen)
            del self._by_id[oldest]
        session_id = secrets.token_urlsafe(32)
        session = self._by_id[session_id] = Session(key)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > IDLE_SECONDS:
            del self._by_id[session_id]
            return None
        session.seen = now
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._by_id.items() if now - v.seen > IDLE_SECONDS]:
            del self._by_id[sid]
