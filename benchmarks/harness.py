"""What every figure shares: the platform under test, deployments, statistics, table rows."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/13"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_platform(*, ingress: str = "haproxy", **env: str) -> str:
    """A local Ray (loopback only) with Serve on a free port, behind `ingress` ("haproxy":
    Serve's HAProxy ingress, as scripts/start.sh runs it; "proxy": Serve's Python proxy);
    returns the base URL."""
    if ingress == "haproxy":
        import tempfile

        from scripts.ingress import haproxy_env

        run_dir = Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp"))
        ports = {
            name: free_port()
            for name in ("metrics_port", "stats_port", "fallback_http_port", "fallback_grpc_port")
        }
        os.environ.update(haproxy_env(run_dir, **ports))
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
            "APP_WEBHOOK_QUEUE": f"bench-hooks-{uuid.uuid4().hex[:6]}",
            "APP_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            # The figures push one user far past any sensible limit; the quota figure measures
            # what checking limits costs, with users of its own.
            "APP_QUOTA_SUBMITS_PER_S": "-1",
            "APP_QUOTA_ACTIVE_TASKS": "-1",
            "APP_QUOTA_OPEN_STREAMS": "-1",
            # The gateway's Open Inference Protocol over gRPC (the infer figure).
            "APP_GRPC_PORT": str(free_port()),
            "APP_REGISTER_BURST": "100000",
            **env,
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


def deploy_gateway(**options: Any) -> None:
    """The gateway with one replica (figures measure one replica), plus its webhooks."""
    from ray import serve

    from app.main import build_gateway

    serve.run(build_gateway(num_replicas=1, **options), name="gateway", route_prefix="/")


def empty_queues(name: str) -> None:
    """Delete the queues of model `name` and its fair-share holds, so a figure never starts
    behind the backlog an earlier figure left (its replicas declare them again)."""
    import asyncio

    import aio_pika

    from app.core.broker import QueueNames

    async def delete() -> None:
        from redis.asyncio import Redis

        from app.sharing.fair_share import hold_queue

        # Fair share's holds too: an earlier figure's backlog held for its user would
        # otherwise be released into the new queue, as load behind the next figure's back.
        prefix = os.environ.get("APP_REDIS_PREFIX", "msp")
        redis = Redis.from_url(REDIS_URL)
        holders = {h.decode() for h in await redis.smembers(f"{prefix}:fair:{name}:holders")}
        stale = [key async for key in redis.scan_iter(match=f"{prefix}:fair:{name}:*")]
        if stale:
            await redis.delete(*stale)
        await redis.aclose()
        connection = await aio_pika.connect_robust(AMQP_URL)
        names = QueueNames.for_model(name)
        async with connection:
            queues = [names.work, names.dead_letter, *(names.retry(n) for n in (1, 2))]
            for queue in [*queues, *(hold_queue(name, owner) for owner in holders)]:
                channel = await connection.channel()
                await channel.queue_delete(queue)

    asyncio.run(delete())


def deploy_model(
    cls: type,
    name: str,
    replicas: int = 1,
    overrides: dict[str, Any] | None = None,
    *,
    fresh: bool = True,
) -> None:
    """Deploy model `name`, on empty queues unless `fresh` is off (a figure starts with no
    backlog, but a drain starts with the one it made)."""
    from ray import serve

    from deployments.sdk import build_app

    if name in serve.status().applications:
        serve.delete(name)
    if fresh:
        empty_queues(name)
    serve.run(
        build_app(cls, model_name=name, num_replicas=replicas, overrides=overrides),
        name=name,
        route_prefix=None,
    )


def token(base: str, *, with_login: bool = False) -> Any:
    """Bearer headers of a new user (and its login, with `with_login`)."""
    credentials = {"login": f"bench{uuid.uuid4().hex[:8]}", "password": "benchmark password"}
    httpx.post(f"{base}/register", json=credentials).raise_for_status()
    access = httpx.post(f"{base}/login", json=credentials).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    return (headers, credentials["login"]) if with_login else headers


def rss_mb(title_part: str) -> float:
    """Resident memory of the processes whose command line contains `title_part`."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if title_part in cmdline:
            try:
                total += process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
    return total


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


# ---- statistics ------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tail_name(samples: int) -> str:
    """p99 of fewer than 100 samples is their maximum: call it that."""
    return "p99" if samples >= 100 else "max"


@dataclass
class Series:
    """One figure measured several times: reported as median (min–max)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def fmt(self, digits: int = 0) -> str:
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return f"{self.values[0]:,.{digits}f}"
        lo, hi = min(self.values), max(self.values)
        return f"{self.median:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    ours: str
    peer: str = "–"
    ratio: str = "–"
    goal: str = "–"
    errors: int = 0

    def markdown(self) -> str:
        return (
            f"| {self.figure} | {self.ours} | {self.peer} | {self.ratio} | {self.goal} "
            f"| {self.errors} |"
        )


def ratio(ours: Series, peer: Series) -> float:
    return ours.median / peer.median if peer.median else float("nan")


def verdict(value: float, goal: float, *, at_least: bool = True) -> str:
    met = value >= goal if at_least else value <= goal
    sign = "≥" if at_least else "≤"
    return f"{sign} {goal:g}×: {'met' if met else 'not met'}"


@dataclass
class Context:
    """What a figure gets: the platform's URL, a user's headers, how hard to push."""

    base: str
    headers: dict[str, str]
    runs: int
    seconds: float
    quick: bool
    notes: list[str] = field(default_factory=list)
    # RSS series (MB) gathered along the way, reported together at the end.
    memory: dict[str, Series] = field(default_factory=dict)


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(interval_s)
