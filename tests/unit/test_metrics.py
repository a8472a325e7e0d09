from __future__ import annotations

from app.core.metrics import (
    LIVE_MODELS,
    TASK_LATENCY,
    TASKS_FINISHED,
    TASKS_IN_FLIGHT,
    Gauge,
    MetricsRecorder,
    SourceTable,
    gauge_values,
    render,
)


def recorder(finished: int, inflight: float) -> MetricsRecorder:
    r = MetricsRecorder()
    for _ in range(finished):
        r.inc(TASKS_FINISHED, "m", "succeeded")
        r.observe(TASK_LATENCY, 0.2, "m")
    r.set(TASKS_IN_FLIGHT, inflight, "m")
    return r


def test_departed_sources_keep_their_totals_but_not_their_gauges():
    table = SourceTable()
    table.report("a", recorder(3, 2).snapshot(), now=0)
    table.report("b", recorder(4, 1).snapshot(), now=0)
    merged = table.merged()
    assert merged[TASKS_FINISHED.name]["m\x1fsucceeded"] == 7
    assert gauge_values(merged, TASKS_IN_FLIGHT) == {("m",): 3}

    table.retire("a")
    merged = table.merged()
    assert merged[TASKS_FINISHED.name]["m\x1fsucceeded"] == 7, "a counter never goes back"
    assert gauge_values(merged, TASKS_IN_FLIGHT) == {("m",): 1}, "a gone source has no load"
    assert merged[TASK_LATENCY.name]["m"][-1] == 7


def test_stale_sources_are_retired_unless_kept():
    table = SourceTable()
    table.report("gateway", recorder(1, 0).snapshot(), now=0)
    table.report("replica", recorder(1, 0).snapshot(), now=0)
    table.retire_stale(now=100, max_age_s=30, keep={"replica": object()})
    table.report("replica", recorder(2, 0).snapshot(), now=100)
    assert table.merged()[TASKS_FINISHED.name]["m\x1fsucceeded"] == 3


def test_render_is_prometheus_text_with_cumulative_buckets():
    text = render(recorder(2, 0).snapshot(), [Gauge(LIVE_MODELS, (), 1)]).decode()
    assert 'app_tasks_finished_total{model="m",status="succeeded"} 2.0' in text
    assert 'app_task_latency_seconds_bucket{le="0.1",model="m"} 0.0' in text
    assert 'app_task_latency_seconds_bucket{le="0.25",model="m"} 2.0' in text
    assert 'app_task_latency_seconds_bucket{le="+Inf",model="m"} 2.0' in text
    assert "app_live_models 1.0" in text
