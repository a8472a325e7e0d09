"""Every benchmark figure still runs: `python -m benchmarks.run --quick` once, into a temporary
file, so a figure that no longer runs fails the suite instead of the next measurement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import FIGURES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1500)
def test_every_benchmark_figure_runs(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    # The benchmark starts its own local Ray and sets its own APP_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "RAY_ADDRESS"))}
    done = subprocess.run(  # noqa: S603 - this interpreter, the project's own module
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--runs",
            "1",
            "--seconds",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = out.read_text()
    for figure in FIGURES:
        assert f"<!-- figure: {figure} -->" in report, figure
    assert "(kept from the previous run)" not in report
