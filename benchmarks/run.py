"""Runs the benchmark figures with their peers in one go and writes benchmarks/RESULTS.md.

    python -m benchmarks.run                      # every figure, 3 runs each (~30 min, 2 cores)
    python -m benchmarks.run --quick              # smaller counts, for a smoke run
    python -m benchmarks.run --only waiters batch # some figures (the others' rows are kept)

All traffic goes to 127.0.0.1. Each figure runs `--runs` times (default 3) and is reported as
median (min–max); ratios compare medians of the same run of this script. Every row counts
the requests or tasks that did not end as expected (errors): a failed task is not a finished
one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from benchmarks.harness import (
    ROOT,
    Context,
    Row,
    deploy_gateway,
    rss_mb,
    start_platform,
    token,
)

FIGURES = [
    "submit",
    "latency",
    "batch",
    "waiters",
    "webhooks",
    "drain",
    "infer",
    "embedder",
    "fairness",
    "quotas",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--only", nargs="*", choices=FIGURES, default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/RESULTS.md"))
    args = parser.parse_args()
    chosen = args.only or FIGURES

    base = start_platform(APP_MAX_WAIT_S="60")
    deploy_gateway()
    time.sleep(2)
    ctx = Context(
        base=base,
        headers=token(base),
        runs=args.runs,
        seconds=args.seconds or (4 if args.quick else 8),
        quick=args.quick,
    )
    gateway_rest = rss_mb("ServeReplica:gateway:gateway")
    started = time.time()
    sections: dict[str, list[Row]] = {}
    notes: dict[str, list[str]] = {}
    for name in chosen:
        module = importlib.import_module(f"benchmarks.figures.{name}")
        print(f"== {name}", flush=True)
        sections[name] = module.run(ctx)
        notes[name] = list(module.NOTES)
        for row in sections[name]:
            print(row.markdown(), flush=True)
    memory = [Row("Gateway replica RSS at rest (MB)", f"{gateway_rest:.0f}")]
    memory += [Row(f"RSS (MB), {what}, peak", series.fmt()) for what, series in ctx.memory.items()]
    sections["memory"] = memory
    elapsed = time.time() - started

    from ray import serve

    serve.shutdown()
    write_report(Path(args.out), sections, notes, ctx, elapsed, args)
    print(Path(args.out).read_text())
    return 0


def _previous_sections(path: Path) -> dict[str, list[str]]:
    """Rows of figures not run this time, kept from the last report."""
    kept: dict[str, list[str]] = {}
    if not path.exists():
        return kept
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("<!-- figure:"):
            current = line.split(":", 1)[1].strip(" ->")
        elif current and line.startswith("| ") and not line.startswith("| figure"):
            kept.setdefault(current, []).append(line)
    return kept


def write_report(
    path: Path,
    sections: dict[str, list[Row]],
    notes: dict[str, list[str]],
    ctx: Context,
    elapsed: float,
    args: argparse.Namespace,
) -> None:
    previous = _previous_sections(path)
    cpu = platform.processor() or platform.machine()
    flags = (" --quick" if args.quick else "") + (
        " --only " + " ".join(args.only) if args.only else ""
    )
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m benchmarks.run{flags}`"
        f" in {elapsed / 60:.1f} min; every peer in the same run as its figure.",
        f"Machine: {os.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; "
        f"ray {version('ray')}, fastapi {version('fastapi')}, aio-pika {version('aio-pika')}, "
        f"celery {version('celery')}, redis-py {version('redis')}.",
        f"Redis, RabbitMQ, Ray and the load generator share the same 2 cores. {ctx.runs} runs "
        "per figure, shown as median (min–max); ratios use the medians. `errors` counts "
        "requests or tasks that did not end as expected.",
        "",
    ]
    # Memory rows of figures not run this time stay, each with the run that measured it.
    measured = {row.figure for row in sections.get("memory", [])}
    kept_memory = [
        line for line in previous.get("memory", []) if line.split(" | ")[0][2:] not in measured
    ]
    for name in [*FIGURES, "memory"]:
        rows = sections.get(name)
        kept = previous.get(name)
        if rows is None and not kept:
            continue
        lines += [
            f"<!-- figure: {name} -->",
            "| figure | ours | peer | ours vs peer | goal | errors |",
            "|---|---|---|---|---|---|",
        ]
        lines += [row.markdown() for row in rows] if rows is not None else list(kept or [])
        if name == "memory":
            lines += kept_memory
        if rows is None:
            lines.append("")
            lines.append("(kept from the previous run)")
        lines.append("")
    # Every figure's reading notes, run this time or kept (a kept row needs its note too).
    all_notes = [
        n
        for name in FIGURES
        if name in sections or name in previous
        for n in notes.get(name) or importlib.import_module(f"benchmarks.figures.{name}").NOTES
    ] + ctx.notes
    if all_notes:
        lines += ["How to read these:", *[f"- {note}" for note in all_notes], ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
