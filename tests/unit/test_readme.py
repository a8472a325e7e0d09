"""The README says what the code does: its sample task document has every field the code sends,
and its metrics table lists every metric the platform exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.core import metrics
from app.core.lifecycle import TaskDocument

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_sample_answer_has_every_field_of_a_task_document():
    block = README.split("The answer:", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    sample = json.loads(block.replace("…", "x"))
    assert set(sample) == set(TaskDocument.model_fields)


def test_the_metrics_table_lists_every_metric():
    table = README.split("## Metrics and dashboard", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(app_[a-z_]+)", table))
    defined = {
        value.name for value in vars(metrics).values() if isinstance(value, metrics.MetricDef)
    }
    assert defined - listed == set(), "not in the README's metrics table"
    assert listed - defined == set(), "in the README's table but not defined"
