"""Dynamic batching on a real Ray Serve with the real services: queued tasks and synchronous
calls reach `process_batch` in groups, and each task keeps its own outcome; the embedder
example (PyTorch, all-MiniLM-L6-v2) answers in batches."""

from __future__ import annotations

import concurrent.futures
import re

import numpy as np

from deployments.embedder import Embedder
from tests.utils.e2e import wait_for, wait_result
from tests.utils.models import Batching


def submit_batch(http, headers, model, bodies):
    accepted = http.post(f"/models/{model}/batches", json=bodies, headers=headers)
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["task_ids"]


def results(http, headers, model, task_ids):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda t: wait_result(http, headers, model, t), task_ids))


def batch_size(document):
    return int(document["result"]["replica"].removeprefix("batch="))


def test_64_embedder_tasks_at_once__vectors_of_its_dimension_identical_for_identical_texts(
    http, auth, deploy_model
):
    headers = auth()
    embedder = deploy_model(Embedder)
    texts = [f"Queued task number {i % 48} waits for a replica." for i in range(64)]
    texts[5] = texts[40] = "The same words give the same vector."
    texts[63] = "A cat sleeps on the warm windowsill."
    documents = results(
        http, headers, embedder, submit_batch(http, headers, embedder, [{"text": t} for t in texts])
    )
    assert [d["status"] for d in documents] == ["succeeded"] * 64
    vectors = [np.array(d["result"]["vector"]) for d in documents]
    assert {d["result"]["dimension"] for d in documents} == {384}
    assert {len(v) for v in vectors} == {384}
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)  # unit length
    np.testing.assert_allclose(vectors[5], vectors[40], atol=1e-5)
    np.testing.assert_allclose(vectors[1], vectors[49], atol=1e-5)  # i % 48 repeats
    # Meaning, not spelling: two texts about queued tasks are closer than one about a cat.
    assert vectors[1] @ vectors[2] > vectors[1] @ vectors[63] + 0.2
    # A real forward pass through a batch: the model's batch-size histogram saw more than one.
    counts = wait_for(lambda: _batch_histogram(http, embedder, "queue"), timeout=30)
    assert counts["sum"] > counts["count"]  # mean batch size above one
    # The synchronous path answers the same vector.
    direct = http.post(f"/models/{embedder}/infer", json={"text": texts[5]}, headers=headers)
    assert direct.status_code == 200
    np.testing.assert_allclose(direct.json()["vector"], vectors[5], atol=1e-5)
    refused = http.post(f"/models/{embedder}/infer", json={"text": "  "}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_input"


def test_queued_tasks_reach_process_batch_in_batches_each_with_its_own_outcome(
    http, auth, deploy_model
):
    headers = auth()
    batching = deploy_model(Batching)
    bodies = [{"text": f"t{i}"} for i in range(24)]
    bodies[3] = {"text": "bad", "fail_with": "invalid"}
    documents = results(http, headers, batching, submit_batch(http, headers, batching, bodies))
    failed = documents[3]
    assert failed["status"] == "failed" and failed["error_code"] == "invalid_input"
    assert failed["error"] == "bad is invalid" and failed["attempts"] == 1
    rest = documents[:3] + documents[4:]
    assert [d["status"] for d in rest] == ["succeeded"] * 23
    assert [d["result"]["text"] for d in rest] == [b["text"] for b in bodies[:3] + bodies[4:]]
    assert max(batch_size(d) for d in rest) > 1  # the model got batches, not single calls
    assert all(batch_size(d) <= 16 for d in rest)  # never more than max_batch_size
    assert all(d["attempts"] == 1 for d in rest)


def test_a_batch_whose_call_raises_is_retried_task_by_task_and_nothing_is_lost(
    http, auth, deploy_model
):
    headers = auth()
    batching = deploy_model(Batching)
    # The first call holding these raises; each task is retried on its own and succeeds.
    once = [{"text": f"retry-{i}", "fail_with": "raise-once"} for i in range(6)]
    documents = results(http, headers, batching, submit_batch(http, headers, batching, once))
    assert [d["status"] for d in documents] == ["succeeded"] * 6
    assert [d["result"]["text"] for d in documents] == [b["text"] for b in once]
    assert {d["attempts"] for d in documents} == {2}
    # A call that always raises: every task of it fails after max_attempts, none is lost.
    always = [{"text": f"doomed-{i}", "fail_with": "raise"} for i in range(3)]
    documents = results(http, headers, batching, submit_batch(http, headers, batching, always))
    assert [d["status"] for d in documents] == ["failed"] * 3
    assert {d["error_code"] for d in documents} == {"model_error"}
    assert {d["attempts"] for d in documents} == {3}
    assert all(re.fullmatch(r"RuntimeError: batch of \d+ raised", d["error"]) for d in documents)


def test_synchronous_calls_batch_through_serve_batch(http, auth, deploy_model):
    headers = auth()
    batching = deploy_model(Batching)

    def call(i):
        return http.post(f"/models/{batching}/infer", json={"text": f"s{i}"}, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert [a.json()["text"] for a in answers] == [f"s{i}" for i in range(12)]
    assert max(int(a.json()["replica"].removeprefix("batch=")) for a in answers) > 1
    invalid = http.post(
        f"/models/{batching}/infer", json={"text": "x", "fail_with": "invalid"}, headers=headers
    )
    assert invalid.status_code == 422 and invalid.json()["detail"] == "x is invalid"
    raised = http.post(
        f"/models/{batching}/infer", json={"text": "x", "fail_with": "raise"}, headers=headers
    )
    assert raised.status_code == 502 and "raised" in raised.json()["detail"]
    assert wait_for(lambda: _batch_histogram(http, batching, "infer"), timeout=30)["count"] >= 1


def _batch_histogram(http, model, path):
    """Count and sum of the model's batch-size histogram on /metrics, once it shows."""
    text = http.get("/metrics").text
    labels = f'model="{model}",path="{path}"'
    count = re.search(rf"app_model_batch_size_count\{{{labels}\}} ([0-9.e+]+)", text)
    total = re.search(rf"app_model_batch_size_sum\{{{labels}\}} ([0-9.e+]+)", text)
    if not (count and total):
        return None
    return {"count": float(count.group(1)), "sum": float(total.group(1))}
