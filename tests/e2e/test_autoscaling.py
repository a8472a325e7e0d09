"""Replicas follow the queue backlog through Serve's autoscaler, down to zero and back."""

from __future__ import annotations

import threading
import time

from deployments.echo import Echo
from tests.utils.e2e import finish_all, listed, submit, submit_all, wait_for, wait_result


def running_replicas(app: str) -> int:
    from ray import serve

    application = serve.status().applications.get(app)
    if application is None or app not in application.deployments:
        return 0
    return int(application.deployments[app].replica_states.get("RUNNING", 0))


class ReplicaWatch:
    """Samples the running replica count in the background."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), running_replicas(self.app)))
            self._stop.wait(0.5)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((count for _, count in self.samples), default=0)


def test_echo_scales_out_on_backlog_and_back_in_after_it_drains(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(
        Echo,
        overrides={
            "min_replicas": 1,
            "max_replicas": 3,
            "max_concurrency": 2,
            "target_tasks_per_replica": 4,
            "downscale_delay_s": 3,
        },
    )
    assert running_replicas(name) == 1
    texts = [f"t{i}" for i in range(300)]
    with ReplicaWatch(name) as watch:
        accepted = submit_all(http, headers, name, texts, delay_ms=200)
        documents = finish_all(http, headers, name, accepted)
        wait_for(lambda: running_replicas(name) == 1, timeout=60, interval=0.5)
    assert watch.peak > 1, watch.samples
    assert len({d["result"]["replica"] for d in documents}) > 1


def test_model_scaled_to_zero_wakes_on_its_first_task(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(
        Echo, overrides={"min_replicas": 0, "max_replicas": 2, "downscale_delay_s": 2}
    )
    wait_for(lambda: running_replicas(name) == 0, timeout=60, interval=0.5)
    # Listed while asleep, with no instance: tasks are still accepted and wake it.
    wait_for(lambda: listed(http, headers)[name]["instances"] == 0, timeout=30)
    task_id = submit(http, headers, name, {"text": "wake up"})
    document = wait_result(http, headers, name, task_id)
    assert document["status"] == "succeeded" and document["result"]["text"] == "wake up"
