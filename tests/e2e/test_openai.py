"""The OpenAI API (/v1) on a real Ray Serve behind the front door, through the official `openai`
package unchanged but for `base_url` and `api_key`: the embedder answers as its /infer does,
and a batch outlives a replica killed in the middle of it."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import openai

from deployments.embedder import Embedder
from tests.utils.e2e import task_writes, unacked, wait_for
from tests.utils.models import HashingEmbedder


def client(gateway_url: str, headers: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway_url}/v1",
        api_key=headers["Authorization"].removeprefix("Bearer "),
        max_retries=0,
    )


def jsonl(lines: list[dict]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def line(custom_id: str, model: str, text: str) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": model, "input": text},
    }


def finished(oai: openai.OpenAI, batch_id: str, timeout: float = 120):
    def ended():
        batch = oai.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "cancelled", "expired") else None

    return wait_for(ended, timeout=timeout, interval=0.25)


def test_the_embedder_through_the_openai_package(http, gateway_url, auth, deploy_model):
    headers = auth()
    embedder = deploy_model(Embedder)
    oai = client(gateway_url, headers)
    assert embedder in [m.id for m in oai.models.list()]
    texts = ["A cat sleeps on the warm windowsill.", "Queues absorb bursts of work."]
    answer = oai.embeddings.create(model=embedder, input=texts)
    assert [d.index for d in answer.data] == [0, 1]
    for text, item in zip(texts, answer.data, strict=True):
        direct = http.post(f"/models/{embedder}/infer", json={"text": text}, headers=headers)
        expected = np.array(direct.json()["vector"])
        got = np.array(item.embedding)
        cosine = got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))
        assert cosine >= 0.9999, cosine
    # A batch of the same model: every custom_id answered once, in the input's order.
    lines = [line(f"t{i}", embedder, f"Sentence number {i} about queues.") for i in range(50)]
    uploaded = oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = finished(oai, batch.id)
    assert done.status == "completed", done
    assert done.request_counts.completed == 50 and done.request_counts.failed == 0
    answers = [json.loads(x) for x in oai.files.content(done.output_file_id).content.splitlines()]
    assert [a["custom_id"] for a in answers] == [f"t{i}" for i in range(50)]
    assert {len(a["response"]["body"]["data"][0]["embedding"]) for a in answers} == {384}


def test_a_batch_outlives_a_replica_killed_mid_batch(
    http, gateway_url, auth, admin_auth, deploy_model
):
    headers = auth()
    name = deploy_model(HashingEmbedder, num_replicas=2)
    detail = wait_for(
        lambda: when_two(http.get(f"/models/{name}", headers=admin_auth).json()), timeout=60
    )
    victim = min(r["pid"] for r in detail["replicas"])
    oai = client(gateway_url, headers)
    lines = [line(f"k{i}", name, f"slow text {i}") for i in range(600)]
    uploaded = oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    # Each replica holds at most 16 unacked deliveries: more than 16 means both, the victim
    # included, are in the middle of lines.
    wait_for(lambda: unacked(name) > 20, timeout=60, interval=0.05)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    done = finished(oai, batch.id, timeout=180)
    assert done.status == "completed", done
    assert done.request_counts.completed == 600 and done.request_counts.failed == 0
    answers = [json.loads(x) for x in oai.files.content(done.output_file_id).content.splitlines()]
    assert [a["custom_id"] for a in answers] == [f"k{i}" for i in range(600)]
    task_ids = [a["response"]["request_id"] for a in answers]
    assert len(set(task_ids)) == 600  # one task per line
    redelivered = [t for t, writes in task_writes(task_ids).items() if writes > 3]
    assert redelivered, "no line was running on the killed replica"
    assert time.monotonic() - killed_at < 180


def when_two(detail: dict) -> dict | None:
    replicas = [r for r in detail.get("replicas", []) if r.get("pid")]
    return detail if len(replicas) == 2 else None
