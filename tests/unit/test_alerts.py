"""The shipped alert rules load, and fire (and stay quiet) as their unit tests say: Prometheus's
own `promtool`, as `scripts/services.sh` installs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: scripts/services.sh installs Debian's prometheus package"
    return subprocess.run(  # noqa: S603 - fixed arguments
        [tool, *args], cwd=MONITORING, capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_and_the_prometheus_config_are_valid():
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 7 rules found" in rules.stdout
    config = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
