"""python -m bench.report RESULTS.json — the table of a run as Markdown (for bench/README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .__main__ import realistic_line, realistic_ratio, summary, throughput_ratio


def markdown(results: dict) -> str:
    lines = ["| scenario | figure | value | target | |", "|---|---|---:|---|---|"]
    for scenario, figure, value, target, verdict in summary(results["scenarios"]):
        lines.append(f"| {scenario} | {figure} | {value} | {target} | {verdict} |")
    ratio = throughput_ratio(results["scenarios"])
    if ratio:
        lines.append("")
        lines.append(
            f"`throughput ratio: {ratio['ratio']:.2f} (hookcast {ratio['hookcast_per_s']:.0f}/s, "
            f"ceiling {ratio['ceiling_per_s']:.0f}/s)`"
        )
    if "skipped" not in results["scenarios"].get("realistic", {"skipped": ""}):
        lines.append("")
        lines.append(f"`{realistic_line(realistic_ratio(results['scenarios']))}`")
    m = results["machine"]
    c0, c1 = results.get("calibration_before", {}), results.get("calibration_after", {})
    lines.append("")
    lines.append(
        f"Run {results['started']} ({results['mode']}, {results['wall_seconds']} s), git "
        f"{m.get('git', {}).get('commit', '?')[:10]}{' + uncommitted src changes' if m.get('git', {}).get('dirty') else ''}; "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['filesystem']}, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']}; durable commit p50 "
        f"{c0.get('sqlite_full_commit_p50_ms')} / {c1.get('sqlite_full_commit_p50_ms')} ms (before / after); "
        f"other processes' CPU at start {results.get('foreign_cpu_pct_at_start', '?')}%."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
