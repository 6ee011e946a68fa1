"""The console's pure parts: the 24-hour chart and the session store."""

from __future__ import annotations

import re

from hookcast.console import sessions
from hookcast.console.chart import hourly_svg
from hookcast.console.sessions import Sessions


def test_chart_draws_one_bar_per_count_and_says_the_totals() -> None:
    hours = [(0, 0)] * 22 + [(10, 0), (4, 2)]
    svg = hourly_svg(hours)
    assert len(re.findall(r'class="ok"', svg)) == 2
    assert len(re.findall(r'class="failed"', svg)) == 1
    assert "last 24 hours: 14 succeeded, 2 failed" in svg
    assert 'role="img"' in svg
    assert hourly_svg([(0, 0)] * 24).count("<rect") == 0


def test_sessions_check_csrf_and_expire(monkeypatch) -> None:
    store = Sessions()
    sid, session = store.open("hc_key")
    assert store.get(sid) is session and session.key == "hc_key"
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("") and not session.csrf_ok("x")
    other_sid, other = store.open("hc_key")
    assert other.csrf != session.csrf and other_sid != sid
    store.close(sid)
    assert store.get(sid) is None and store.get(None) is None and store.get("nope") is None
    now = other.seen + sessions.IDLE_SECONDS + 1
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now)
    assert store.get(other_sid) is None
