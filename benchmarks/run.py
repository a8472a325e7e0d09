"""Runs the benchmark figures with their peers in one go and writes benchmarks/RESULTS.md.

    python -m benchmarks.run                      # every figure, 3 runs each (~40 min, 2 cores)
    python -m benchmarks.run --quick --out X.md   # smaller counts, for a smoke run
    python -m benchmarks.run --only waiters batch --out X.md   # some figures, elsewhere

RESULTS.md is always written whole, by one run of every figure, and names the commit it
measured: rows are never carried over from another run.

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
import subprocess
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
    "openai",
    "streams",
    "fairness",
    "quotas",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--only", nargs="*", choices=FIGURES, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    chosen = args.only or FIGURES
    results = ROOT / "benchmarks/RESULTS.md"
    if args.out is None:
        if args.only or args.quick:
            parser.error("--only and --quick runs write elsewhere: give --out")
        args.out = str(results)

    # What is measured is the code as it is when the run starts.
    commit = _commit()
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
        # A user of its own per figure: fair share keeps each user's tasks in their order, so
        # a figure run as the user an earlier one flooded would wait behind that backlog.
        ctx.headers = token(base)
        sections[name] = module.run(ctx)
        notes[name] = list(module.NOTES)
        for row in sections[name]:
            print(row.markdown(), flush=True)
    memory = [Row("Gateway replica RSS at rest (MB)", f"{gateway_rest:.0f}")]
    memory += [Row(f"RSS (MB), {what}, peak", series.fmt()) for what, series in ctx.memory.items()]
    sections["memory"] = memory
    elapsed = time.time() - started

    write_report(Path(args.out), sections, notes, ctx, elapsed, args, commit)
    print(Path(args.out).read_text())
    # The local Ray instance goes whole: Serve's graceful shutdown can wait on the gateway
    # replica's drain behind HAProxy, which measures nothing.
    import ray

    ray.shutdown()
    return 0


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit() -> str:
    """The commit measured (with "+changes" when the work tree differs from it)."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if dirty else "")


def write_report(
    path: Path,
    sections: dict[str, list[Row]],
    notes: dict[str, list[str]],
    ctx: Context,
    elapsed: float,
    args: argparse.Namespace,
    commit: str,
) -> None:
    cpu = platform.processor() or platform.machine()
    command = "python -m benchmarks.run" + " ".join(
        [""]
        + (["--quick"] if args.quick else [])
        + ([f"--runs {args.runs}"] if args.runs != 3 else [])
        + ([f"--seconds {args.seconds:g}"] if args.seconds else [])
        + (["--only", *args.only] if args.only else [])
    )
    lines = [
        "# Benchmark results",
        "",
        f"Commit `{commit}`, measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        f"`{command}` in {elapsed / 60:.1f} min: every row below comes from this one run, "
        "every peer measured in it beside its figure.",
        f"Machine: {os.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; "
        f"ray {version('ray')}, fastapi {version('fastapi')}, aio-pika {version('aio-pika')}, "
        f"celery {version('celery')}, redis-py {version('redis')}.",
        f"Redis, RabbitMQ, Ray and the load generator share the same 2 cores. {ctx.runs} runs "
        "per figure, shown as median (min–max); ratios use the medians. `errors` counts "
        "requests or tasks that did not end as expected. Throughput is read by wrk (C), "
        "never by a Python client.",
        "",
    ]
    for name in [*FIGURES, "memory"]:
        rows = sections.get(name)
        if rows is None:
            continue
        lines += [
            f"<!-- figure: {name} -->",
            "| figure | ours | peer | ours vs peer | goal | errors |",
            "|---|---|---|---|---|---|",
            *[row.markdown() for row in rows],
            "",
        ]
    all_notes = [n for name in FIGURES if name in sections for n in notes[name]] + ctx.notes
    if all_notes:
        lines += ["How to read these:", *[f"- {note}" for note in all_notes], ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
