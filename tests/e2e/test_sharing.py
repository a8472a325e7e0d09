"""Sharing one platform, on a real Ray Serve through Serve's proxy: one user's backlog does not
delay another's tasks (fair share), limits answer 429, and a user's high-priority task runs
before their own queued low-priority ones."""

from __future__ import annotations

from datetime import datetime

from deployments.echo import Echo
from tests.utils.e2e import wait_for

TASK_MS = 20


def _finished(document):
    return datetime.fromisoformat(document["finished_at"]).timestamp()


def _documents(http, headers, model, task_ids):
    found = {}
    for task_id in task_ids:
        answer = http.get(f"/models/{model}/result", params={"task_id": task_id}, headers=headers)
        found[task_id] = answer.json()
    return found


def _limit(http, admin_auth, headers, **limits):
    login = http.get("/account", headers=headers).json()["login"]
    answer = http.patch(f"/admin/users/{login}/limits", json=limits, headers=admin_auth)
    assert answer.status_code == 200, answer.text


def test_a_second_users_tasks_finish_while_the_firsts_backlog_is_still_queued(
    http, auth, admin_auth, deploy_model
):
    name = deploy_model(Echo, num_replicas=1, overrides={"max_concurrency": 4})
    alice, bob = auth(), auth()
    _limit(http, admin_auth, alice, active_tasks=5000)
    backlog = []
    for _ in range(3):
        answer = http.post(
            f"/models/{name}/batches",
            json=[{"text": "a", "delay_ms": TASK_MS}] * 1000,
            headers=alice,
        )
        assert answer.status_code == 202, answer.text
        backlog += answer.json()["task_ids"]
    bobs = [
        http.post(
            f"/models/{name}/tasks", json={"text": "b", "delay_ms": TASK_MS}, headers=bob
        ).json()["task_id"]
        for _ in range(10)
    ]

    def bob_done():
        docs = _documents(http, bob, name, bobs)
        return docs if all(d["status"] == "succeeded" for d in docs.values()) else None

    done = wait_for(bob_done, timeout=120)
    # When Bob's last task finished, most of Alice's backlog was still waiting: first come,
    # first served would have put all 3,000 of hers ahead of his.
    usage = http.get("/account", headers=alice).json()["usage"]["models"]
    waiting = next(m["queued_or_running"] for m in usage if m["model"] == name)
    assert waiting > 2000, waiting
    latest_bob = max(_finished(d) for d in done.values())
    first_submit = min(
        datetime.fromisoformat(d["created_at"]).timestamp()
        for d in _documents(http, alice, name, backlog[:1]).values()
    )
    assert latest_bob - first_submit < 30


def test_a_flood_of_submits_is_answered_429_with_retry_after(http, auth, admin_auth, deploy_model):
    name = deploy_model(Echo)
    headers = auth()
    _limit(http, admin_auth, headers, submit_burst=5, submits_per_s=1)
    answers = [
        http.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers) for _ in range(8)
    ]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [202] * 5 and set(codes[5:]) == {429}, codes
    refused = answers[5]
    assert refused.json()["error"] == "too_many_requests"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"submits";q=5;w=5'
    assert refused.headers["RateLimit"].startswith('"submits";r=0;')


def test_a_high_priority_task_runs_before_its_owners_queued_low_ones(
    http, auth, admin_auth, deploy_model
):
    window = 4
    name = deploy_model(
        Echo, num_replicas=1, overrides={"max_concurrency": 1, "fair_share_window": window}
    )
    headers = auth()
    _limit(http, admin_auth, headers, max_priority="high")
    queued = http.post(
        f"/models/{name}/batches",
        json=[{"text": "low", "delay_ms": 50}] * 20,
        params={"priority": "low"},
        headers=headers,
    )
    assert queued.status_code == 202, queued.text
    lows = queued.json()["task_ids"]
    high = http.post(
        f"/models/{name}/tasks",
        json={"text": "high", "delay_ms": 50},
        params={"priority": "high"},
        headers=headers,
    ).json()["task_id"]

    def all_done():
        docs = _documents(http, headers, name, [*lows, high])
        return docs if all(d["status"] == "succeeded" for d in docs.values()) else None

    docs = wait_for(all_done, timeout=60)
    assert docs[high]["priority"] == "high"
    high_started = datetime.fromisoformat(docs[high]["started_at"])
    before = [t for t in lows if datetime.fromisoformat(docs[t]["started_at"]) < high_started]
    # Only the window's tasks, already in the model's queue when the high one came, went
    # first (and one more, should a release race the submit): the other 15 ran after it.
    assert len(before) <= window + 1, len(before)
