"""The submit path's floor: a bare uvicorn + FastAPI app (no Ray) doing a submit's own work.

Per request: check an HS256 bearer token, parse the JSON body into the model's request message,
write the task's hash to Redis (one round trip), publish the task envelope, persistent, to the
model's queue and wait for the broker's confirm, answer 202. The same work our gateway does,
without Serve, the registry, quotas, fair share or validation against the published schema.

    FLOOR_REDIS_URL=... FLOOR_AMQP_URL=... FLOOR_QUEUE=... FLOOR_JWT_KEY=... \\
        uvicorn benchmarks.floor_app:app --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import jwt
from fastapi import FastAPI, HTTPException, Request, Response
from google.protobuf import json_format
from redis.asyncio import Redis

from protos.echo_pb2 import EchoRequest
from protos.task_pb2 import Task

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    state["redis"] = Redis.from_url(os.environ["FLOOR_REDIS_URL"])
    connection = await aio_pika.connect_robust(os.environ["FLOOR_AMQP_URL"])
    state["channel"] = await connection.channel(publisher_confirms=True)
    state["key"] = os.environ["FLOOR_JWT_KEY"]
    yield
    await connection.close()
    await state["redis"].aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/models/{name}/tasks", status_code=202)
async def submit(name: str, request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        claims = jwt.decode(token, state["key"], algorithms=["HS256"])
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401) from exc
    message = json_format.Parse(await request.body(), EchoRequest())
    task_id = str(uuid.uuid4())
    envelope = Task(
        task_id=task_id, model=name, owner=claims["sub"], payload=message.SerializeToString()
    )
    envelope.created_at.GetCurrentTime()
    await state["redis"].hset(
        f"floor:task:{task_id}",
        mapping={"status": "pending", "owner": claims["sub"], "created_at": time.time()},
    )
    await state["channel"].default_exchange.publish(
        aio_pika.Message(
            envelope.SerializeToString(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=task_id,
        ),
        routing_key=os.environ["FLOOR_QUEUE"],
    )
    return Response(
        content=f'{{"task_id":"{task_id}","status":"pending"}}',
        status_code=202,
        media_type="application/json",
    )
