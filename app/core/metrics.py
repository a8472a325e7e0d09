"""Every metric the platform exports, and how processes share them through the registry.

Each process (a gateway replica, a model replica) records into its own `MetricsRecorder`
and sends a snapshot to the registry with its periodic heartbeat. The registry keeps the
latest snapshot per source and folds a departed source into a running total, so counters
never go backwards. The gateway's `/metrics` renders the merged snapshot plus live gauges:
one scrape target for the whole platform, whatever the number of replicas.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class MetricDef:
    name: str
    help: str
    kind: str  # "counter", "histogram" or "gauge"
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = LATENCY_BUCKETS  # a histogram's upper bounds


TASKS_SUBMITTED = MetricDef(
    "app_tasks_submitted_total", "Tasks accepted by the gateway.", "counter", ("model",)
)
TASKS_FINISHED = MetricDef(
    "app_tasks_finished_total",
    "Tasks that reached a final state, by status (succeeded, failed, cancelled, expired).",
    "counter",
    ("model", "status"),
)
TASK_RETRIES = MetricDef(
    "app_task_retries_total", "Failed attempts sent back for a retry.", "counter", ("model",)
)
TASK_LATENCY = MetricDef(
    "app_task_latency_seconds",
    "From submission to the final state being stored.",
    "histogram",
    ("model",),
)
TASK_RUN_TIME = MetricDef(
    "app_task_run_seconds", "Time spent in process_request per attempt.", "histogram", ("model",)
)
HTTP_LATENCY = MetricDef(
    "app_http_request_duration_seconds",
    "Gateway HTTP requests by route template, method and status code.",
    "histogram",
    ("route", "method", "code"),
)
LIVE_MODELS = MetricDef("app_live_models", "Models registered and listed.", "gauge", ())
MODEL_INFO = MetricDef(
    "app_live_model_info", "1 for every live model (its name as a label).", "gauge", ("model",)
)
MODEL_INSTANCES = MetricDef(
    "app_model_instances", "Live instances (replicas) per model.", "gauge", ("model",)
)
QUEUE_MESSAGES = MetricDef(
    "app_queue_messages",
    "Messages in a model's queue: ready (waiting) or unacked (being processed).",
    "gauge",
    ("model", "state"),
)
DEAD_LETTER_MESSAGES = MetricDef(
    "app_dead_letter_messages", "Messages in a model's dead-letter queue.", "gauge", ("model",)
)
DEPENDENCY_UP = MetricDef(
    "app_dependency_up",
    "1 when the gateway reached the dependency (redis, rabbitmq, registry) at this scrape.",
    "gauge",
    ("dependency",),
)
MODEL_DISABLED = MetricDef(
    "app_model_disabled", "1 for a model an admin disabled.", "gauge", ("model",)
)
REPLICA_MEMORY = MetricDef(
    "app_replica_memory_bytes",
    "Resident memory of each live model replica.",
    "gauge",
    ("model", "replica", "node"),
)
NODE_MEMORY = MetricDef(
    "app_node_memory_bytes",
    "Memory of each node running model replicas: total or available.",
    "gauge",
    ("node", "address", "state"),
)

CANCEL_REQUESTS = MetricDef(
    "app_task_cancel_requests_total",
    "Cancel requests for pending or running tasks.",
    "counter",
    ("model",),
)
WEBHOOK_DELIVERIES = MetricDef(
    "app_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: ok, retried (will be tried again), failed (gave up).",
    "counter",
    ("outcome",),
)

INFER_REQUESTS = MetricDef(
    "app_infer_requests_total",
    "Synchronous calls (/infer, Open Inference Protocol) by outcome: ok, invalid_input, "
    "model_error, timeout, bad_request.",
    "counter",
    ("model", "outcome"),
)
INFER_DURATION = MetricDef(
    "app_infer_duration_seconds",
    "Synchronous calls, from request to answer (cache hits included).",
    "histogram",
    ("model",),
)
CACHE_LOOKUPS = MetricDef(
    "app_cache_lookups_total",
    "Lookups in a model's cache of identical requests, by result: hit, miss.",
    "counter",
    ("model", "result"),
)
BATCH_SIZE = MetricDef(
    "app_model_batch_size",
    "Requests per process_batch call, by path (queue: tasks; infer: synchronous calls).",
    "histogram",
    ("model", "path"),
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

# Reported by processes as a current value, not a running total: summed over live sources
# only, never kept for a source that is gone.
TASKS_IN_FLIGHT = MetricDef(
    "app_tasks_in_flight", "Tasks a model's replicas are processing now.", "gauge", ("model",)
)
LONG_POLL_WAITERS = MetricDef(
    "app_long_poll_waiters", "Clients waiting on a result (long-poll) now.", "gauge", ()
)
EVENT_STREAMS = MetricDef("app_event_streams", "Server-sent event streams open now.", "gauge", ())
# Gauges rendered straight from the merged snapshot.
SOURCE_GAUGES = {m.name: m for m in (LONG_POLL_WAITERS, EVENT_STREAMS)}

SHARED_METRICS = {
    m.name: m
    for m in (
        TASKS_SUBMITTED,
        TASKS_FINISHED,
        TASK_RETRIES,
        TASK_LATENCY,
        TASK_RUN_TIME,
        HTTP_LATENCY,
        CANCEL_REQUESTS,
        WEBHOOK_DELIVERIES,
        INFER_REQUESTS,
        INFER_DURATION,
        CACHE_LOOKUPS,
        BATCH_SIZE,
    )
}

# A snapshot: metric name -> label values joined by "\x1f" -> counter value, or for a
# histogram [bucket counts..., sum, count]. Plain JSON-like data, cheap to send over Ray.
Snapshot = dict[str, dict[str, Any]]
_SEP = "\x1f"


class MetricsRecorder:
    """The metrics one process records; `snapshot()` is what it reports."""

    def __init__(self) -> None:
        self._values: Snapshot = {}

    def set(self, metric: MetricDef, value: float, *labels: str) -> None:
        self._values.setdefault(metric.name, {})[_SEP.join(labels)] = value

    def inc(self, metric: MetricDef, *labels: str, amount: float = 1.0) -> None:
        series = self._values.setdefault(metric.name, {})
        key = _SEP.join(labels)
        series[key] = series.get(key, 0.0) + amount

    def observe(self, metric: MetricDef, value: float, *labels: str) -> None:
        series = self._values.setdefault(metric.name, {})
        key = _SEP.join(labels)
        buckets = series.get(key)
        if buckets is None:
            buckets = series[key] = [0.0] * (len(metric.buckets) + 2)
        index = bisect.bisect_left(metric.buckets, value)
        if index < len(metric.buckets):
            buckets[index] += 1
        buckets[-2] += value
        buckets[-1] += 1

    def snapshot(self) -> Snapshot:
        return {
            name: {key: list(v) if isinstance(v, list) else v for key, v in series.items()}
            for name, series in self._values.items()
        }


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Sum snapshots series by series."""
    total: Snapshot = {}
    for snapshot in snapshots:
        for name, series in snapshot.items():
            into = total.setdefault(name, {})
            for key, value in series.items():
                if isinstance(value, list):
                    current = into.get(key)
                    into[key] = (
                        list(value)
                        if current is None
                        else [a + b for a, b in zip(current, value, strict=True)]
                    )
                else:
                    into[key] = into.get(key, 0.0) + value
    return total


@dataclass(frozen=True)
class Gauge:
    metric: MetricDef
    labels: tuple[str, ...]
    value: float


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot, gauges: list[Gauge]) -> None:
        self._snapshot = snapshot
        self._gauges = gauges

    def collect(self) -> Iterator[Any]:
        for name, metric in SHARED_METRICS.items():
            series = self._snapshot.get(name, {})
            if metric.kind == "counter":
                family: Any = CounterMetricFamily(
                    name.removesuffix("_total"), metric.help, labels=metric.labels
                )
                for key, value in sorted(series.items()):
                    family.add_metric(_split(key, metric), value)
            else:
                family = HistogramMetricFamily(name, metric.help, labels=metric.labels)
                for key, values in sorted(series.items()):
                    cumulative, buckets = 0.0, []
                    for bound, count in zip(metric.buckets, values, strict=False):
                        cumulative += count
                        buckets.append((_bound(bound), cumulative))
                    buckets.append(("+Inf", values[-1]))
                    family.add_metric(_split(key, metric), buckets, values[-2])
            yield family
        for name, metric in SOURCE_GAUGES.items():
            family = GaugeMetricFamily(name, metric.help, labels=metric.labels)
            for key, value in sorted(self._snapshot.get(name, {}).items()):
                family.add_metric(_split(key, metric), value)
            if not metric.labels and not self._snapshot.get(name):
                family.add_metric([], 0.0)
            yield family
        by_metric: dict[str, list[Gauge]] = {}
        for gauge in self._gauges:
            by_metric.setdefault(gauge.metric.name, []).append(gauge)
        for name, gauges in by_metric.items():
            metric = gauges[0].metric
            family = GaugeMetricFamily(name, metric.help, labels=metric.labels)
            for gauge in gauges:
                family.add_metric(list(gauge.labels), gauge.value)
            yield family


def gauge_values(snapshot: Snapshot, metric: MetricDef) -> dict[tuple[str, ...], float]:
    """The series of a gauge in a merged snapshot, by label values."""
    return {
        tuple(_split(key, metric)): float(value)
        for key, value in snapshot.get(metric.name, {}).items()
    }


def _split(key: str, metric: MetricDef) -> list[str]:
    return key.split(_SEP) if metric.labels else []


def _bound(bound: float) -> str:
    return repr(float(bound))


def render(snapshot: Snapshot, gauges: list[Gauge]) -> bytes:
    """Prometheus text exposition of a merged snapshot plus gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, gauges))
    return generate_latest(registry)


class SourceTable:
    """The registry's side: latest snapshot per source, departed sources kept in a total."""

    def __init__(self) -> None:
        self._latest: dict[str, Snapshot] = {}
        self._seen: dict[str, float] = {}
        self._retired: Snapshot = {}

    def report(self, source: str, snapshot: Snapshot, now: float) -> None:
        self._latest[source] = snapshot
        self._seen[source] = now

    def retire(self, source: str) -> None:
        snapshot = self._latest.pop(source, None)
        self._seen.pop(source, None)
        if snapshot is not None:
            totals = {name: s for name, s in snapshot.items() if name in SHARED_METRICS}
            self._retired = merge([self._retired, totals])

    def retire_stale(self, now: float, max_age_s: float, keep: Mapping[str, object]) -> None:
        """Retire sources not heard from for `max_age_s`, except those in `keep`."""
        for source, seen in list(self._seen.items()):
            if now - seen > max_age_s and source not in keep:
                self.retire(source)

    def merged(self) -> Snapshot:
        return merge([self._retired, *self._latest.values()])
