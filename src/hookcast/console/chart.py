"""A webhook's last 24 hours as a small inline SVG: one bar per hour, successes up in green,
failures down in red. Pure: counts in, markup out (escaped by construction: numbers only)."""

from __future__ import annotations

from collections.abc import Sequence

WIDTH, HEIGHT, BAR = 120, 28, 5


def hourly_svg(hours: Sequence[tuple[int, int]]) -> str:
    top = max([max(ok, failed) for ok, failed in hours] + [1])
    half = HEIGHT / 2
    bars = []
    for i, (ok, failed) in enumerate(hours):
        x = i * BAR
        if ok:
            h = max(1.0, half * ok / top)
            bars.append(
                f'<rect x="{x}" y="{half - h:.1f}" width="{BAR - 1}" height="{h:.1f}" class="ok"/>'
            )
        if failed:
            h = max(1.0, half * failed / top)
            bars.append(
                f'<rect x="{x}" y="{half:.1f}" width="{BAR - 1}" height="{h:.1f}" class="failed"/>'
            )
    total_ok = sum(ok for ok, _ in hours)
    total_failed = sum(f for _, f in hours)
    label = f"last 24 hours: {total_ok} succeeded, {total_failed} failed"
    return (
        f'<svg class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {len(hours) * BAR} {HEIGHT}" aria-label="{label}"><title>{label}</title>'
        f'<line x1="0" y1="{half}" x2="{len(hours) * BAR}" y2="{half}" class="axis"/>'
        + "".join(bars)
        + "</svg>"
    )
