"""The Grafana dashboard only queries metrics the platform exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from app.core import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring/grafana/dashboards/platform.json"


def exported_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, metrics.MetricDef):
            if value.kind == "histogram":
                names |= {f"{value.name}_bucket", f"{value.name}_sum", f"{value.name}_count"}
            else:
                names.add(value.name)
    return names


def test_dashboard_is_valid_and_queries_known_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert {"Live models", "Live model names", "Queue length per model (ready)"} <= set(titles)
    known = exported_names()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expression = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", target["expr"])
            used = {w for w in re.findall(r"[a-z_][a-z0-9_]*", expression) if w.startswith("app_")}
            assert used, f"{panel['title']}: no platform metric in {target['expr']}"
            assert used <= known, f"{panel['title']}: unknown {used - known}"


def test_provisioning_points_at_the_dashboard_folder():
    provider = yaml.safe_load(
        (ROOT / "monitoring/grafana/provisioning/dashboards/platform.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "monitoring/grafana/dashboards"
    prometheus = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    ]
    assert "127.0.0.1:8000" in targets
