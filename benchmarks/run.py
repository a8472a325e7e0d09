"""Runs every benchmark with its peers in one go and writes benchmarks/RESULTS.md.

    python -m benchmarks.run            # about 10 minutes on 2 cores
    python -m benchmarks.run --quick    # smaller counts, for a smoke run

All traffic goes to 127.0.0.1. Each figure is measured twice (runs) and reported with both
values; ratios compare medians taken in the same run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/13"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
CONCURRENCY = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_platform() -> str:
    os.environ.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "APP_ENVIRONMENT": "test",
            "APP_REDIS_URL": REDIS_URL,
            "APP_AMQP_URL": AMQP_URL,
            "APP_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
            "APP_JWT_SECRET": uuid.uuid4().hex * 2,
            "APP_REGISTRY_NAME": f"bench-registry-{uuid.uuid4().hex[:6]}",
            "APP_PING_INTERVAL_S": "2",
        }
    )
    import ray
    from ray import serve

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def deploy_gateway(max_ongoing_requests: int) -> None:
    from ray import serve

    from app.main import build_gateway

    serve.run(
        build_gateway(max_ongoing_requests=max_ongoing_requests), name="gateway", route_prefix="/"
    )


def token(base: str) -> dict[str, str]:
    credentials = {"login": f"bench{uuid.uuid4().hex[:8]}", "password": "benchmark password"}
    httpx.post(f"{base}/register", json=credentials).raise_for_status()
    access = httpx.post(f"{base}/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {access}"}


def deploy_model(cls: type, name: str, replicas: int) -> None:
    from ray import serve

    from deployments.sdk import build_app

    serve.run(build_app(cls, model_name=name, num_replicas=replicas), name=name, route_prefix=None)


class PeakRss:
    """Samples the RSS of processes matching `title_part` in the background; keeps the peak."""

    def __init__(self, title_part: str) -> None:
        self.title_part = title_part
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.title_part))
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_mb(title_part: str) -> float:
    """Resident memory of the Ray worker whose process title contains `title_part`."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if title_part in cmdline:
            total += process.memory_info().rss / 2**20
    return total


# ---- 1. submit path --------------------------------------------------------------------


def submit_rate(base: str, headers: dict[str, str], path: str, seconds: float) -> Any:
    from benchmarks.load import closed_loop

    body = {"text": "hello"}

    async def request(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(path, json=body, headers=headers)

    expect = 202 if path.startswith("/models/") else 200
    return asyncio.run(
        closed_loop(base, request, concurrency=CONCURRENCY, duration_s=seconds, expect=expect)
    )


# ---- 2. drain rate ---------------------------------------------------------------------


async def prefill_ours(name: str, n: int) -> list[str]:
    import aio_pika

    from app.core.broker import declare_model_queues, persistent_message, publish_confirmed
    from app.core.envelope import new_envelope
    from app.core.settings import get_settings
    from app.core.store import ResultStore
    from protos.echo_pb2 import EchoRequest

    settings = get_settings()
    store = ResultStore.from_url(REDIS_URL, prefix=settings.redis_prefix, ttl_s=3600, timeout_s=5)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.queue_delete(name)
    await declare_model_queues(channel, name, max_attempts=3)
    ids = []
    payload = EchoRequest(text="x").SerializeToString()
    for _ in range(n):
        envelope = new_envelope(model=name, owner="bench", payload=payload)
        await store.create_pending(
            envelope.task_id, model=name, owner="bench", created_at=time.time()
        )
        await publish_confirmed(
            channel,
            name,
            persistent_message(envelope.SerializeToString(), message_id=envelope.task_id),
            timeout_s=5,
        )
        ids.append(envelope.task_id)
    await connection.close()
    await store.close()
    return ids


async def wait_ours(ids: list[str], timeout_s: float = 300) -> list[float]:
    from redis.asyncio import Redis

    from app.core.settings import get_settings

    prefix = get_settings().redis_prefix
    redis = Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            async with redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hget(f"{prefix}:task:{task_id}", "finished_at")
                stamps = await pipe.execute()
            if all(stamps):
                return [float(s) for s in stamps]
            await asyncio.sleep(0.5)
        raise TimeoutError("tasks did not finish")
    finally:
        await redis.aclose()


def drain_ours(cls: type, name: str, n: int, replicas: int = 1) -> tuple[float, float]:
    """Pre-fill, then start the model: (tasks/s over the completion span, span seconds)."""
    from ray import serve

    if name in serve.status().applications:
        serve.delete(name)
    ids = asyncio.run(prefill_ours(name, n))
    deploy_model(cls, name, replicas)
    stamps = asyncio.run(wait_ours(ids))
    serve.delete(name)
    span = max(stamps) - min(stamps)
    return (n - 1) / span, span


# ---- 3. end-to-end latency -------------------------------------------------------------


async def latency_at_rate(
    base: str,
    headers: dict[str, str],
    model: str,
    rate: float,
    seconds: float,
    background: int = 0,
) -> list[float]:
    """Submit at `rate`/s and long-poll each result; optional closed-loop background load."""
    latencies: list[float] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=200)
    ) as client:

        async def one() -> None:
            started = time.perf_counter()
            accepted = await client.post(
                f"/models/{model}/tasks", json={"text": "t"}, headers=headers
            )
            task_id = accepted.json()["task_id"]
            while True:
                result = await client.get(
                    f"/models/{model}/result",
                    params={"task_id": task_id, "wait": 10},
                    headers=headers,
                )
                if result.status_code == 200:
                    break
            latencies.append(time.perf_counter() - started)

        async def load() -> None:
            while not stop.is_set():
                await client.post(f"/models/{model}/tasks", json={"text": "bg"}, headers=headers)

        background_tasks = [asyncio.create_task(load()) for _ in range(background)]
        probes = []
        for _ in range(int(rate * seconds)):
            probes.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*probes)
        stop.set()
        await asyncio.gather(*background_tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- report ----------------------------------------------------------------------------


def fmt(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:,.{digits}f}" for v in values)


def submit_figures(
    base: str, settings: tuple[int, ...], runs: int, seconds: float, label: str = ""
) -> tuple[list[str], float]:
    """Figure 1 for each gateway max_ongoing_requests in `settings`: table rows, and the
    gateway's peak memory under load (MB) for the first setting."""
    from ray import serve

    from benchmarks import peers
    from benchmarks.models import Noop

    rows: list[str] = []
    gateway_load_mb = 0.0
    for mor in settings:
        deploy_gateway(mor)
        serve.run(peers.plain_serve_app(mor), name="plain", route_prefix="/plain")
        headers = token(base)
        deploy_model(Noop, "bench-noop", 1)
        ours, plain, mem_gateway = [], [], []
        for _ in range(runs):
            with PeakRss("ServeReplica:gateway") as peak:
                result = submit_rate(base, headers, "/models/bench-noop/tasks", seconds)
            mem_gateway.append(peak.peak)
            ours.append(result.rate)
            plain.append(submit_rate(base, {}, "/plain/noop", seconds).rate)
        ratio = statistics.median(ours) / statistics.median(plain)
        rows.append(
            f"| 1. Submit path{label}, max_ongoing_requests={mor} (req/s, {CONCURRENCY} "
            f"clients) | {fmt(ours)} | plain Ray Serve endpoint: {fmt(plain)} | {ratio:.2f}× |"
        )
        if mor == settings[0]:
            gateway_load_mb = statistics.median(mem_gateway)
        serve.delete("plain")
        serve.delete("bench-noop")
    return rows, gateway_load_mb


def throughput_optimized_rows(runs: int, seconds: float) -> list[str]:
    """Figure 1 again in a Ray started with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (a separate
    process: Serve reads the flag when it starts)."""
    env = {**os.environ, "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    command = [sys.executable, "-m", "benchmarks.run", "--only-submit", "--seconds", str(seconds)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    if not rows:
        tail = (done.stderr or done.stdout)[-500:].replace("\n", " ")
        rows = [f"| 1. Submit path, throughput-optimized Serve | failed: {tail} | – | – |"]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/RESULTS.md"))
    parser.add_argument("--only-submit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (4 if args.quick else 8)
    n_drain = 1000 if args.quick else 3000
    n_scale = 400 if args.quick else 2000
    runs = 2

    if args.only_submit:
        base = start_platform()
        rows, _ = submit_figures(base, (128,), runs, seconds, " (throughput-optimized Serve)")
        for row in rows:
            print("ROW " + row)
        return 0

    # First, before this process starts its own Ray: the throughput-optimized variant.
    optimized_rows = throughput_optimized_rows(runs, seconds)

    from ray import serve

    from benchmarks import peers
    from benchmarks.models import Busy, Noop

    base = start_platform()
    notes: list[str] = []
    started = time.time()

    # 1. Submit path, for two gateway settings of max_ongoing_requests.
    rows, gateway_load_mb = submit_figures(base, (128, 5), runs, seconds)
    rows += optimized_rows

    # Resources at rest (gateway with the shipped setting, one model replica).
    deploy_gateway(128)
    headers = token(base)
    deploy_model(Noop, "bench-noop", 1)
    time.sleep(3)
    gateway_rest = rss_mb("ServeReplica:gateway")
    model_rest = rss_mb("ServeReplica:bench-noop")

    # 2. Drain rate of one replica, pre-filled queue.
    ours_drain, floor, celery_rates, ray_tc = [], [], [], []
    serve.delete("bench-noop")
    for _ in range(runs):
        rate, _span = drain_ours(Noop, "bench-noop-drain", n_drain)
        ours_drain.append(rate)
        floor.append(asyncio.run(peers.bare_floor(n_drain)))
        celery_rates.append(peers.celery_worker(n_drain))
        try:
            ray_tc.append(peers.ray_task_consumer(n_drain))
        except Exception as exc:  # report, do not hide
            notes.append(f"Ray Serve task_consumer run failed: {exc!r}")
    med = statistics.median
    rows.append(
        f"| 2. Drain rate, 1 replica, {n_drain} no-op tasks (tasks/s) | {fmt(ours_drain)} "
        f"| Ray Serve task_consumer (Celery adapter): {fmt(ray_tc) or 'n/a'} "
        f"| {med(ours_drain) / med(ray_tc):.2f}× |"
        if ray_tc
        else f"| 2. Drain rate, 1 replica (tasks/s) | {fmt(ours_drain)} "
        "| Ray Serve task_consumer: n/a | – |"
    )
    rows.append(
        f"| 2. Drain rate (same run) | {fmt(ours_drain)} | plain Celery worker, threads×16: "
        f"{fmt(celery_rates)} | {med(ours_drain) / med(celery_rates):.2f}× |"
    )
    rows.append(
        f"| 2. Drain rate (same run) | {fmt(ours_drain)} | bare aio-pika → Redis (floor): "
        f"{fmt(floor)} | {med(ours_drain) / med(floor):.2f}× |"
    )

    # 3. End-to-end latency at a fixed rate, idle and under load; memory under load.
    deploy_model(Noop, "bench-noop", 1)
    rate = 10.0
    for label, background in (("idle", 0), ("under load (8 closed-loop submitters)", 8)):
        samples = []
        for _ in range(runs):
            with PeakRss("ServeReplica:bench-noop") as peak:
                latencies = asyncio.run(
                    latency_at_rate(base, headers, "bench-noop", rate, seconds, background)
                )
            samples.append((pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000))
            if background:
                model_load = peak.peak
        rows.append(
            f"| 3. Submit → result visible, {rate:.0f} req/s, {label} (ms, p50 / p99) "
            f"| {' ; '.join(f'{a:.0f} / {b:.0f}' for a, b in samples)} | – | – |"
        )
    serve.delete("bench-noop")

    # 4. Scale-out: CPU-bound 20 ms model, 1 vs 2 replicas.
    spans = {}
    for replicas in (1, 2):
        spans[replicas] = [drain_ours(Busy, "bench-cpu", n_scale, replicas)[1] for _ in range(runs)]
    rows.append(
        f"| 4. Drain {n_scale} × 20 ms CPU tasks (s), 2 replicas | {fmt(spans[2], 1)} "
        f"| 1 replica: {fmt(spans[1], 1)} | {med(spans[1]) / med(spans[2]):.2f}× faster |"
    )

    # 5. Resources.
    rows.append(
        f"| 5. Memory RSS (MB): gateway at rest / under load | {gateway_rest:.0f} / "
        f"{gateway_load_mb:.0f} | – | – |"
    )
    rows.append(
        f"| 5. Memory RSS (MB): one model replica at rest / under load | {model_rest:.0f} / "
        f"{model_load:.0f} | – | – |"
    )

    elapsed = time.time() - started
    serve.shutdown()
    write_report(Path(args.out), rows, notes, elapsed, quick=args.quick)
    print(Path(args.out).read_text())
    return 0


def write_report(
    path: Path, rows: list[str], notes: list[str], elapsed: float, quick: bool
) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m benchmarks.run"
        f"{' --quick' if quick else ''}` in {elapsed / 60:.1f} min; every peer in the same run.",
        f"Machine: {os.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; ray {version('ray')}, fastapi {version('fastapi')}, "
        f"aio-pika {version('aio-pika')}, celery {version('celery')}, redis-py {version('redis')}.",
        "Redis, RabbitMQ, Ray and the load generator share the same 2 cores. Two runs per figure "
        "(shown as `run 1 / run 2`); ratios use the medians.",
        "",
        "| figure | ours | peer | ours vs peer |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    if notes:
        lines += ["Notes:", *[f"- {note}" for note in notes], ""]
    lines += [
        "How to read these:",
        "- 1: both sides go through Ray Serve's HTTP proxy, which costs about as much CPU per "
        "request as the endpoint itself; ours also writes Redis, publishes with a confirm and "
        "runs the consuming replica on the same 2 cores. max_ongoing_requests=5 (Serve's "
        "default) throttles both; the gateway ships with 128.",
        "- 1, throughput-optimized: Serve's RAY_SERVE_THROUGHPUT_OPTIMIZED mode (direct "
        "ingress, gRPC between proxy and replicas) measured slower on this 2-core machine, so "
        "the platform keeps Serve's default mode. The HAProxy ingress was not measured: it binds "
        "replica ports on all interfaces.",
        "- 2: every consumer starts on a pre-filled queue; the rate is over the span of "
        "completion times (start-up excluded). Ours does two Redis writes per task (running, "
        "result) where the floor does one, and acks only after the result is stored, as do the "
        "Celery peers (acks_late).",
        "- 4: the 20 ms tasks keep a core busy; 2 replicas on 2 cores share them with Redis, "
        "RabbitMQ and Ray.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
