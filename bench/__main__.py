"""python -m bench [--quick] [--only SCENARIO[,SCENARIO...]] [--out FILE]

Runs the benchmark scenarios of bench/README.md on this machine, shows progress bars and a
table of figures, writes every figure to a JSON file, and prints as its last line:

    throughput ratio: X.XX (hookcast N/s, ceiling M/s)

(when the `realistic` scenario ran, `realistic ratio: X.XX (hookcast N/s, ceiling M/s)`
comes before it; with `--only realistic` that is the last line.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .env import (
    DEFAULT_POSTGRES_URL,
    REPO,
    HookcastConfig,
    Noise,
    Receiver,
    Tls,
    calibrate,
    foreign_load,
    machine,
)
from .scenarios import BATCH, SCENARIOS, Context

RESULTS = REPO / "bench" / "results"

# `--quick` must finish within a minute: scenarios share this budget (seconds), in order; one
# that would start after it is spent is skipped.
QUICK_BUDGET = 52.0

# Bounds: no scenario may run longer than this (seconds), quick / full.
LIMITS = {
    "ceiling": (20, 120),
    "e2e_python": (25, 300),
    "e2e_python_embedded": (25, 300),
    "e2e_rest": (40, 600),
    "latency": (20, 120),
    "fanout": (20, 180),
    "matching": (25, 180),
    "backlog": (30, 600),
    "isolation": (25, 300),
    "postgres_workers": (60, 900),
    "crmscript": (15, 120),
    "realistic": (55, 480),
    "outbox": (40, 300),
}

# Left out of `--quick` (which must stay under a minute) unless asked for with --only.
FULL_ONLY = {"postgres_workers", "realistic"}

# Processes that a scenario drives and that are not our children: their CPU is not "other
# processes' CPU" (foreign_cpu_pct) for that scenario.
OWN_PROCESSES = {"postgres_workers": ("postgres",)}


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="reduced sizes of every scenario, under 60 s in all"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these (repeat or comma-separate): {', '.join(SCENARIOS)}; "
        "the e2e scenarios bring the ceiling along",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON file for the figures [default: bench/results/<timestamp>.json]",
    )
    parser.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL", "EXTRA"),
        default="FULL",
        help="SQLite synchronous for hookcast [default: FULL]",
    )
    parser.add_argument(
        "--concurrency", type=int, help="hookcast attempts in flight [default: hookcast's]"
    )
    parser.add_argument(
        "--per-webhook-concurrency",
        type=int,
        help="hookcast attempts in flight per webhook [default: hookcast's]",
    )
    parser.add_argument(
        "--batch-size", type=int, help="hookcast claim/outcome batch [default: hookcast's]"
    )
    parser.add_argument(
        "--webhook-options",
        type=_json_object,
        default={},
        metavar="JSON",
        help="delivery options of the e2e_python* and latency webhooks, e.g. "
        '\'{"Ordering": "PerRecord"}\' or \'{"MaxPerSecond": 100000}\' [default: none]',
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES_URL,
        metavar="URL",
        help="PostgreSQL server for postgres_workers (a database on it to connect to; "
        "the scenario creates and drops its own) [default: $BENCH_POSTGRES_URL or "
        f"{DEFAULT_POSTGRES_URL}]",
    )
    parser.add_argument(
        "--pg-analyze",
        action="store_true",
        help="postgres_workers: ANALYZE the queued tables before each drain "
        "(hookcast never does; fresh tables have no planner statistics)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (databases, logs)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to SECONDS until other processes use "
        "< 10%% of the CPUs (for shared machines)",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    if any(name.startswith("e2e") for name in chosen) and "ceiling" not in chosen:
        chosen.insert(0, "ceiling")
    args.scenarios = [name for name in SCENARIOS if not chosen or name in chosen]
    args.chosen = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run(args))
    return uvloop.run(run(args))


async def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:  # CI logs and files: wide enough for the table
        console = Console(width=140)
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="hookcast-bench-"))
    tls = Tls.create(workdir)
    config = HookcastConfig(
        tls,
        synchronous=args.synchronous,
        concurrency=args.concurrency,
        per_webhook_concurrency=args.per_webhook_concurrency,
        batch_size=args.batch_size,
        webhook_options=args.webhook_options,
    )
    results: dict[str, Any] = {
        "started": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": machine(workdir),
        "hookcast_settings": config.describe(),
        "webhook_options": args.webhook_options,
        "calibration_before": calibrate(workdir),
        "scenarios": {},
    }
    results["foreign_cpu_pct_at_start"] = await foreign_load(1.0)
    receiver = Receiver(tls, workdir)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,
    )
    try:
        await receiver.start()
        ctx = Context(
            tls=tls,
            workdir=workdir,
            receiver=receiver,
            config=config,
            progress=progress,
            quick=args.quick,
            postgres_url=args.postgres,
            pg_analyze=args.pg_analyze,
            wait_idle=args.wait_idle,
        )
        with progress:
            for name in args.scenarios:
                limit = LIMITS[name][0 if args.quick else 1]
                if args.quick and name in FULL_ONLY and name not in args.chosen:
                    results["scenarios"][name] = {
                        "skipped": f"full run only (or --quick --only {name})"
                    }
                    continue
                if args.quick:
                    left = QUICK_BUDGET - (time.monotonic() - started)
                    if left < 3:
                        results["scenarios"][name] = {
                            "error": "skipped: the --quick time budget is spent"
                        }
                        continue
                    limit = min(limit, left)
                elif args.wait_idle > 0:
                    await wait_idle(args.wait_idle, progress.console)
                t0 = time.monotonic()
                load = os.getloadavg()
                noise = Noise(OWN_PROCESSES.get(name, ())).start()
                try:
                    figures = await asyncio.wait_for(SCENARIOS[name](ctx), limit)
                except Exception as exc:  # one broken scenario must not lose the others
                    figures = {
                        "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    }
                    if not isinstance(exc, TimeoutError):
                        figures["traceback"] = traceback.format_exc()
                    progress.console.print(f"[red]{name} failed: {figures['error']}[/]")
                figures["wall_seconds"] = round(time.monotonic() - t0, 2)
                figures["loadavg_before"] = [round(x, 2) for x in load]
                figures["foreign_cpu_pct"] = noise.stop()
                results["scenarios"][name] = figures
                ctx.figures[name] = figures
        results["calibration_after"] = calibrate(workdir)
    finally:
        await receiver.stop()
        if args.keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    rows = summary(results["scenarios"])
    results["summary"] = [
        dict(zip(("scenario", "figure", "value", "target", "verdict"), r, strict=True))
        for r in rows
    ]
    ratio = throughput_ratio(results["scenarios"])
    results["throughput_ratio"] = ratio
    results["realistic_ratio"] = realistic_ratio(results["scenarios"])

    out = args.out or RESULTS / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    table = Table(
        title=f"hookcast benchmark ({results['mode']}, {results['machine']['cores']} cores, "
        f"SQLite synchronous={args.synchronous})"
    )
    for column in ("scenario", "figure", "value", "target", ""):
        table.add_column(column, justify="right" if column == "value" else "left")
    for row in rows:
        verdict = {
            "met": "[green]met[/]",
            "missed": "[red]missed[/]",
            "stretch met": "[green]stretch met[/]",
            "disturbed": "[yellow]disturbed[/]",
        }
        table.add_row(*row[:4], verdict.get(row[4], row[4]))
    console.print(table)
    cal0, cal1 = results["calibration_before"], results.get("calibration_after", {})
    console.print(
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{results['machine']['filesystem']}; durable SQLite commit p50 "
        f"{cal0['sqlite_full_commit_p50_ms']} ms before / {cal1.get('sqlite_full_commit_p50_ms', '?')} ms after, "
        f"1M-step Python loop {cal0['python_loop_1m_ms']} / {cal1.get('python_loop_1m_ms', '?')} ms"
    )
    console.print(f"figures written to {out} ({results['wall_seconds']} s in all)")
    real = realistic_ratio(results["scenarios"])
    results_realistic = "skipped" not in results["scenarios"].get("realistic", {"skipped": ""})
    if results_realistic:
        print(realistic_line(real), flush=True)
    if ratio is not None:
        print(
            f"throughput ratio: {ratio['ratio']:.2f} (hookcast {ratio['hookcast_per_s']:.0f}/s, "
            f"ceiling {ratio['ceiling_per_s']:.0f}/s)",
            flush=True,
        )
    elif not results_realistic:
        print("throughput ratio: n/a (the ceiling or e2e_python scenario did not run)", flush=True)
    return 0


async def wait_idle(seconds: float, console: Console) -> float:
    """Wait (at most `seconds`) until other processes use < 10% of the CPUs."""
    deadline = time.monotonic() + seconds
    while (busy := await foreign_load(2.0)) >= 10 and time.monotonic() < deadline:
        console.print(f"[yellow]other processes use {busy:.0f}% of the CPUs; waiting[/]")
    return busy


def throughput_ratio(s: dict[str, Any]) -> dict[str, float] | None:
    ceiling, e2e = s.get("ceiling", {}), s.get("e2e_python", {})
    if "per_s" not in ceiling or "per_s" not in e2e or not ceiling["per_s"]:
        return None
    return {
        "ratio": round(e2e["per_s"] / ceiling["per_s"], 3),
        "hookcast_per_s": e2e["per_s"],
        "ceiling_per_s": ceiling["per_s"],
    }


def realistic_ratio(s: dict[str, Any]) -> dict[str, float] | None:
    r = s.get("realistic", {})
    if not r.get("ratio"):
        return None
    return {
        "ratio": r["ratio"],
        "hookcast_per_s": r["per_s"],
        "ceiling_per_s": r["ceiling_per_s"],
    }


def realistic_line(r: dict[str, float] | None) -> str:
    if r is None:
        return "realistic ratio: n/a (the realistic scenario failed)"
    return (
        f"realistic ratio: {r['ratio']:.2f} (hookcast {r['hookcast_per_s']:.0f}/s, "
        f"ceiling {r['ceiling_per_s']:.0f}/s)"
    )


def _verdict(ok: bool | None, stretch: bool = False) -> str:
    if ok is None:
        return ""
    return ("stretch met" if stretch else "met") if ok else "missed"


def summary(s: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The table: one row per headline figure, with its target from issue 4 (none asserted)."""
    rows: list[tuple[str, str, str, str, str]] = []

    def add(
        scenario: str,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
        stretch: bool = False,
    ) -> None:
        rows.append((scenario, figure, value, target, _verdict(ok, stretch)))

    for name, figures in s.items():
        if "error" in figures:
            add(name, "error", figures["error"][:60])
        elif "skipped" in figures:
            add(name, "skipped", figures["skipped"])
    noisy = {
        name: f["foreign_cpu_pct"] for name, f in s.items() if f.get("foreign_cpu_pct", 0) >= 10
    }
    if noisy:
        add(
            "! machine busy",
            "other processes' CPU during " + ", ".join(noisy),
            ", ".join(f"{v:.0f}%" for v in noisy.values()),
            "< 10%",
        )
        rows[-1] = (*rows[-1][:4], "disturbed")
    if "per_s" in (c := s.get("ceiling", {})):
        runs = ", ".join(f"{k}: {v['per_s']:,.0f}" for k, v in c["runs"].items())
        add(
            "1 ceiling",
            f"bare aiohttp, best of 8/16/32 ({c['best_concurrency']})",
            f"{c['per_s']:,.0f}/s",
        )
        add("1 ceiling", "by concurrency", runs)
        if "per_s" in (h := c.get("hookcast_sender", {})):
            add(
                "1 hookcast's sender",
                f"same payloads, {h['concurrency']} in flight (not the ceiling)",
                f"{h['per_s']:,.0f}/s",
            )
            bare = c["runs"][str(h["concurrency"])]
            add(
                "1 hookcast's sender",
                "client CPU per request: hookcast's sender / bare aiohttp",
                f"{h['client_cpu_us_per_request']:.0f} / {bare['client_cpu_us_per_request']:.0f} µs",
            )
    ceiling = c.get("per_s")
    if "per_s" in (e := s.get("e2e_python", {})):
        add("2 e2e Python API", f"deliveries/s over {e['received']:,}", f"{e['per_s']:,.0f}/s")
        if ceiling:
            r = e["per_s"] / ceiling
            add(
                "2 e2e Python API",
                "ratio to ceiling",
                f"{r:.2f}",
                "≥ 0.5 (stretch 0.7)",
                r >= 0.5,
                r >= 0.7,
            )
        add(
            "2 e2e Python API",
            "CPU per delivery: hookcast serve + application",
            f"{e['hookcast_cpu_us_per_delivery']:.0f} + {e['app_cpu_us_per_delivery']:.0f} µs",
        )
    if "per_s" in (e := s.get("e2e_python_embedded", {})):
        label = "2 e2e Python API, embedded"
        add(label, f"deliveries/s over {e['received']:,}", f"{e['per_s']:,.0f}/s")
        if ceiling:
            add(label, "ratio to ceiling", f"{e['per_s'] / ceiling:.2f}")
        add(label, "CPU per delivery (one process)", f"{e['hookcast_cpu_us_per_delivery']:.0f} µs")
    rest = s.get("e2e_rest", {})
    for phase, label, target in (("single", "", 0.35), ("batch", f", batches of {BATCH}", 0.6)):
        if "per_s" in (e := rest.get(phase, {})):
            name = f"2 e2e REST{label}"
            add(name, f"deliveries/s over {e['received']:,}", f"{e['per_s']:,.0f}/s")
            if ceiling:
                r = e["per_s"] / ceiling
                add(name, "ratio to ceiling", f"{r:.2f}", f"≥ {target}", r >= target)
            add(
                name,
                "CPU per delivery, hookcast serve",
                f"{e['hookcast_cpu_us_per_delivery']:.0f} µs",
            )
    if "signal_request" in (e := rest.get("latency", {})):
        m = e["signal_request"]
        add(
            "2 e2e REST",
            f"signal request at {e['rate']}/s: p50 / p99",
            f"{m['p50_ms']} / {m['p99_ms']} ms",
            "p99 ≤ 10 ms",
            m["p99_ms"] <= 10,
        )
    if "signal_request" in (e := rest.get("latency_no_delivery", {})):
        m = e["signal_request"]
        add(
            "2 e2e REST",
            "the same for an event without webhooks: p50 / p99",
            f"{m['p50_ms']} / {m['p99_ms']} ms",
        )
    lat = s.get("latency", {})
    for key, p50_target, p99_target in (("50/s", 3.0, 10.0), ("500/s", None, 25.0)):
        if key in lat:
            m = lat[key]["signal_to_receipt"]
            if p50_target is not None:
                add(
                    f"3 latency {key}",
                    "signal→receipt p50",
                    f"{m['p50_ms']:.2f} ms",
                    f"≤ {p50_target:g} ms",
                    m["p50_ms"] <= p50_target,
                )
            else:
                add(f"3 latency {key}", "signal→receipt p50", f"{m['p50_ms']:.2f} ms")
            add(f"3 latency {key}", "signal→receipt p95", f"{m['p95_ms']:.2f} ms")
            add(
                f"3 latency {key}",
                "signal→receipt p99",
                f"{m['p99_ms']:.2f} ms",
                f"≤ {p99_target:g} ms",
                m["p99_ms"] <= p99_target,
            )
    if "enqueue_ms" in (f := s.get("fanout", {})):
        enq = f["enqueue_ms"]["p50_ms"]
        add(
            "4 fan-out 1→1,000",
            "enqueue (signal() duration), median",
            f"{enq:.1f} ms",
            "≤ 20 ms",
            enq <= 20,
        )
        add(
            "4 fan-out 1→1,000",
            "all 1,000 delivered, median",
            f"{f['all_delivered_ms']['p50_ms']:.0f} ms",
        )
        add(
            "4 fan-out 1→1,000",
            "all outcomes recorded, median",
            f"{f['all_recorded_ms']['p50_ms']:.0f} ms",
        )
    if "ratio_burst_cost" in (m := s.get("matching", {})):
        one, many = m["1 webhook"], m["10,000 webhooks"]
        add(
            "4 matching",
            "signal() p50 alone, 1 vs 10,000 webhooks",
            f"{one['sequential_p50_ms']:.2f} / {many['sequential_p50_ms']:.2f} ms",
        )
        add(
            "4 matching",
            "signal cost in a burst, 1 vs 10,000",
            f"{one['burst_us_per_signal']:.0f} / {many['burst_us_per_signal']:.0f} µs",
        )
        worst = max(m["ratio_sequential_p50"], m["ratio_burst_cost"])
        add(
            "4 matching",
            "ratio 10,000 : 1 (alone / burst)",
            f"{m['ratio_sequential_p50']:.2f} / {m['ratio_burst_cost']:.2f}",
            "≤ 1.5×",
            worst <= 1.5,
        )
    if "drain_per_s" in (b := s.get("backlog", {})):
        add("5 backlog", f"drain of {b['deliveries']:,} queued", f"{b['drain_per_s']:,.0f}/s")
        add(
            "5 backlog",
            "peak RSS of hookcast worker (VmHWM)",
            f"{b['peak_rss_mib']:.0f} MiB",
            "≤ 150 MiB",
            b["peak_rss_mib"] <= 150,
        )
        add(
            "5 backlog",
            "worker CPU while receiver stopped",
            f"{b['worker_cpu_s_while_down']:.1f} s in {b['down_seconds']:.0f} s",
        )
    if "throughput_ratio" in (i := s.get("isolation", {})):
        alone, beside = i["alone"], i["beside hanging"]
        add(
            "6 isolation",
            "healthy throughput alone / beside hanging",
            f"{alone['throughput_per_s']:,.0f} / {beside['throughput_per_s']:,.0f}/s",
        )
        add(
            "6 isolation",
            "ratio beside : alone",
            f"{i['throughput_ratio']:.2f}",
            "≥ 0.9",
            i["throughput_ratio"] >= 0.9,
        )
        add(
            "6 isolation",
            "healthy p50 / p99 alone",
            f"{alone['latency']['p50_ms']:.1f} / {alone['latency']['p99_ms']:.1f} ms",
        )
        add(
            "6 isolation",
            "healthy p50 / p99 beside hanging",
            f"{beside['latency']['p50_ms']:.1f} / {beside['latency']['p99_ms']:.1f} ms",
        )
    if "postgresql" in (w := s.get("postgres_workers", {})):
        n, runs = w["deliveries"], w["postgresql"]
        ks = list(runs)
        label = "7 PostgreSQL workers" + (" (ANALYZEd)" if w.get("analyzed") else "")
        reps = f", median of {w['repetitions']}" if w.get("repetitions", 1) > 1 else ""
        add(
            label,
            f"drain of {n:,} queued, {' / '.join(ks)} workers{reps}",
            " / ".join(f"{runs[k]['drain_per_s']:,.0f}" for k in ks) + "/s",
        )
        if w.get("repetitions", 1) > 1:
            add(
                label,
                "every run (min–max)",
                ", ".join(
                    f"{k}: {min(runs[k]['drain_per_s_all']):,.0f}–{max(runs[k]['drain_per_s_all']):,.0f}"
                    for k in ks
                ),
            )
        add(
            label,
            "CPU, % of all cores: workers + postgres",
            " / ".join(
                f"{runs[k]['workers_cpu_pct_of_machine']:.0f}+{runs[k]['postgres_cpu_pct_of_machine']:.0f}"
                for k in ks
            )
            + " %",
        )
        add(
            label,
            "CPU per delivery: workers + postgres",
            " / ".join(
                f"{runs[k]['workers_cpu_us_per_delivery']:.0f}+{runs[k]['postgres_cpu_us_per_delivery']:.0f}"
                for k in ks
            )
            + " µs",
        )
        waits = [
            sum(v for key, v in (runs[k].get("pg_backends_mean") or {}).items() if "Lock/" in key)
            for k in ks
        ]
        add(label, "backends waiting for a lock (mean)", " / ".join(f"{v:.2f}" for v in waits))
        add(
            label,
            "other processes' CPU during these drains",
            " / ".join(f"{runs[k]['foreign_cpu_pct_during_drain']:.0f}" for k in ks) + " %",
            "< 10%",
        )
        if max(runs[k]["foreign_cpu_pct_during_drain"] for k in ks) >= 10:
            rows[-1] = (*rows[-1][:4], "disturbed")
        sq = w["sqlite_1_worker"]
        add(
            "7 SQLite, same machine",
            f"drain of {n:,} queued, 1 worker{reps}",
            f"{sq['drain_per_s']:,.0f}/s",
        )
        add(
            "7 SQLite, same machine",
            "CPU: worker, % of all cores / per delivery",
            f"{sq['workers_cpu_pct_of_machine']:.0f} % / {sq['workers_cpu_us_per_delivery']:.0f} µs",
        )
        e2e = w.get("sqlite_e2e_python_per_s")
        add(
            "7 SQLite, same machine",
            "e2e Python API (scenario 2, this run)",
            f"{e2e:,.0f}/s" if e2e else "not run",
        )
    if "run_us" in (c := s.get("crmscript", {})):
        label = f"8 CRMScript handler ({c['script_lines']} lines)"
        add(
            label,
            f"compile, fresh text (median of {c['compile']['count']})",
            f"{c['compile_ms']:.2f} ms",
        )
        add(label, "compile, cached (same text)", f"{c['cached_compile_us']:.1f} µs")
        add(label, "run, precompiled (median)", f"{c['run_us']:.1f} µs")
        add(
            label,
            "run from its text (cache hit, as hooks run)",
            f"{c['run_from_source_us']:.1f} µs",
        )
        add(
            label, "run of a 1-statement script (fixed cost)", f"{c['run_one_statement_us']:.1f} µs"
        )
        add(label, "runs/s, one thread (precompiled)", f"{c['runs_per_s']:,.0f}/s")
        add(label, "same logic in plain Python, per run", f"{c['python_us']:.2f} µs")
        add(label, "ratio hookcast : plain Python", f"{c['ratio']:.1f}×")
    if "ratio" in (r := s.get("realistic", {})):
        _realistic_rows(r, add, rows)
    o = s.get("outbox", {})
    for backend in ("sqlite", "postgresql"):
        if "ratio_outbox" in (b := o.get(backend, {})):
            label = f"10 outbox ({backend})"
            us = b["us_per_transaction"]
            add(label, "app transaction alone", f"{us['alone']:,.0f} µs")
            add(
                label,
                "+ 1 signal (outbox row), ratio",
                f"{b['ratio_outbox']:.2f}× (+{b['outbox_us_per_signal']:,.0f} µs)",
            )
            cpu = b["cpu_us_per_transaction"]
            add(
                label,
                "application CPU per transaction: alone / + signal",
                f"{cpu['alone']:,.0f} / {cpu['outbox']:,.0f} µs",
            )
            add(
                label,
                "+ matching in the transaction, ratio",
                f"{b['ratio_matched_in_transaction']:.2f}×",
            )
            add(label, "dispatcher drains the outbox", f"{b['drain_events_per_s']:,.0f} events/s")
    return rows


def _realistic_rows(
    r: dict[str, Any], add: Any, rows: list[tuple[str, str, str, str, str]]
) -> None:
    label = "9 realistic"
    h, bare, without = r["hookcast"], r["bare"], r["hookcast_without_hanging"]
    classes = r["hosts_by_class"]
    add(
        label,
        f"{r['hosts']} hosts ({', '.join(f'{n} {c}' for c, n in classes.items())}), "
        f"{r['webhooks']} webhooks, burst of {r['burst']:,}",
        f"{r['burst_healthy']:,} healthy",
    )
    median_of = len(r.get("rounds", {}).get("with hanging", [])) if "rounds" in r else 1
    add(
        label,
        "healthy deliveries/s: hookcast"
        + (f" (median of {median_of} rounds)" if median_of > 1 else "")
        + f" / bare client (best of {'/'.join(bare['runs'])}: {bare['best_concurrency']})",
        f"{r['per_s']:,.0f} / {r['ceiling_per_s']:,.0f}/s",
    )
    add(label, "ratio to the bare client", f"{r['ratio']:.2f}", "≥ 0.8", r["ratio"] >= 0.8)
    add(
        label,
        "bare client by concurrency",
        ", ".join(f"{k}: {v['per_s']:,.0f}" for k, v in bare["runs"].items()),
    )
    if "per_s" in (t := r.get("hookcast_transport", {})):
        add(
            label,
            f"hookcast's sender alone, {t['concurrency']} in flight (not the ceiling); "
            "hookcast : it",
            f"{t['per_s']:,.0f}/s; {r['per_s'] / t['per_s']:.2f}" if t["per_s"] else "0/s",
        )
    p = r["perfect_sender"]
    add(label, f"perfect sender, {p['per_host_limit']} per host (bound)", f"{p['per_s']:,.0f}/s")
    rounds = r.get("rounds", {"with hanging": [h["per_s"]], "without hanging": [without["per_s"]]})
    n = len(rounds["with hanging"])
    add(
        label,
        "healthy/s with hanging hosts : without"
        + (f" (median of {n} rounds' ratios)" if n > 1 else ""),
        f"{r['hanging_ratio']:.2f} ({'medians ' if n > 1 else ''}{r['per_s']:,.0f} / "
        f"{r.get('without_hanging_per_s', without['per_s']):,.0f}/s)",
        "≥ 0.9",
        r["hanging_ratio"] >= 0.9,
    )
    if n > 1:
        add(
            label,
            "every round: with / without (ratio); ratio of the medians",
            ", ".join(
                f"{a:,.0f} / {b:,.0f} ({a / b:.2f})"
                for a, b in zip(rounds["with hanging"], rounds["without hanging"], strict=False)
                if b
            )
            + f"; {r.get('hanging_ratio_of_medians', 0):.2f}",
        )
    once = h["exactly_once"]
    add(
        label,
        "healthy: received / expected / delivered, duplicates, bad signatures",
        f"{once['received']:,} / {once['expected']:,} / {once['delivered_in_db']:,}, "
        f"{once['duplicates']}, {once['bad_signatures']}",
        "exactly once, 0 bad",
        once["ok"],
    )
    if "steady" in h:
        lat = h["steady"]["latency"]
        add(
            label,
            f"healthy signal→receipt p50 / p99, steady {h['steady']['achieved_per_s']:.0f}/s",
            f"{lat['p50_ms']:,.0f} / {lat['p99_ms']:,.0f} ms",
        )
    lat = h["burst_latency"]
    add(
        label,
        "healthy signal→receipt p50 / p99, burst",
        f"{lat['p50_ms']:,.0f} / {lat['p99_ms']:,.0f} ms",
    )
    peak = h["in_flight_peak"]
    add(
        label,
        "peak in flight: at receivers (of it at hanging hosts) / worker heartbeat",
        f"{peak['open_at_receivers']} ({peak['open_by_class'].get('hanging', 0)}) / "
        f"{peak['worker_heartbeat_in_flight']}",
    )
    bare_best = bare["runs"][str(bare["best_concurrency"])]
    add(
        label,
        "peak in flight, bare client (at receivers)",
        f"{bare_best['in_flight_peak']['open_at_receivers']}",
    )
    add(
        label,
        "worker CPU per healthy delivery / per attempt (burst)",
        f"{h['worker_cpu_us_per_delivery']:,.0f} / {h['worker_cpu_us_per_attempt']:,.0f} µs",
        "≤ 300 µs",
        h["worker_cpu_us_per_delivery"] <= 300,
    )
    if h.get("worker_peak_rss_mib") is not None:
        add(
            label,
            "peak RSS of hookcast worker (VmHWM)",
            f"{h['worker_peak_rss_mib']:.0f} MiB",
            "≤ 250 MiB",
            h["worker_peak_rss_mib"] <= 250,
        )
    by_class = h.get("webhook_states", {}).get("by_class", {})
    for cls in ("failing", "hanging"):
        c = by_class.get(cls)
        if c is None:
            continue
        states = ", ".join(f"{n} {s}" for s, n in c["states"].items())
        if c.get("consecutive_errors_of_the_active"):
            states += f" (errors in a row: {sorted(c['consecutive_errors_of_the_active'])})"
        took = c.get("transition_s_after_first_request_min_max")
        add(
            label,
            f"{cls} webhooks after {h['states_read_s_after_burst_start']:.0f} s: states; "
            "s from first request to TooManyErrors",
            f"{states}; {took[0]}–{took[1]} s" if took else states,
            "TooManyErrors",
            set(c["states"]) == {"TooManyErrors"},
        )
        late = c["requests_after_transition"]
        add(
            label,
            f"{cls} hosts: requests received / attempts recorded; after TooManyErrors",
            f"{c['requests_received']} / {c['attempts_recorded']}; {late}"
            + (
                f" (to {c['webhooks_with_requests_after_transition']} webhooks, "
                f"up to {c['latest_request_after_transition_ms']:,.0f} ms after)"
                if late
                else ""
            ),
            "0 after",
            late == 0,
        )
    add(
        label,
        "receivers' CPU, % of a core each: hookcast / bare client",
        f"{h['receivers_cpu_pct_of_a_core_each']:.0f} / "
        f"{bare_best['receivers_cpu_pct_of_a_core_each']:.0f} %",
    )
    add(
        label,
        "other processes' CPU during hookcast / bare client (best) / hookcast without hanging",
        f"{h['foreign_cpu_pct']:.0f} / {bare_best['foreign_cpu_pct']:.0f} / "
        f"{without['foreign_cpu_pct']:.0f} %",
        "< 10%",
    )
    if max(h["foreign_cpu_pct"], bare_best["foreign_cpu_pct"], without["foreign_cpu_pct"]) >= 10:
        rows[-1] = (*rows[-1][:4], "disturbed")


if __name__ == "__main__":
    sys.exit(main())
