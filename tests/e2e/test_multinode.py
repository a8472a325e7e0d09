"""The platform on a real multi-node Ray cluster on this one machine: a head (gateway,
registry) and two worker nodes (model replicas), each a raylet of its own on its own loopback
address (127.0.0.1, .2 and .3), with Ray's token authentication between them. One worker node
is SIGKILLed, raylet and workers alike, while 500 tasks drain: none is lost or stuck, its
replica comes back on the surviving node, and the registry drops the dead instance within two
ping intervals.

Ray's single-node mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, used everywhere else) forbids
other nodes, so these Ray processes run without it, each told its own address; all their
traffic stays on loopback.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from scripts.ingress import haproxy_env
from tests.conftest import AMQP_URL, REDIS_URL
from tests.utils.e2e import promote, wait_for
from tests.utils.net import free_port

ROOT = Path(__file__).resolve().parents[2]
PING_INTERVAL_S = 2.0
PING_TIMEOUT_S = 1.0
WORKERS = ("127.0.0.2", "127.0.0.3")
MODEL = "echo-multinode"
TASKS = 500


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a `ray start --block` and everything under it: raylet, agents, workers."""
    try:
        parent = psutil.Process(process.pid)
        members = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in members:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)


@dataclass
class Cluster:
    logs: Path  # every node's Ray logs land here when the cluster stops
    base_url: str
    workers: dict[str, subprocess.Popen[bytes]]
    start_worker: Callable[[str, int], subprocess.Popen[bytes]]
    env: dict[str, str]  # the cluster's APP_* settings (its Redis, for the admin command)


def _node_ports(index: int) -> list[str]:
    """Ports every node needs for itself: several raylets share this host. Worker processes
    take ports from a range of the node's own, below the kernel's ephemeral range."""
    low = 24_000 + 500 * index
    return [
        "--metrics-export-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--min-worker-port", str(low),
        "--max-worker-port", str(low + 400),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "APP_"))}
    env.update(
        {
            # Several nodes: not Ray's single-node mode. Each node is told its address.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": uuid.uuid4().hex,
            "APP_ENVIRONMENT": "test",
            "APP_REDIS_URL": REDIS_URL,
            "APP_AMQP_URL": AMQP_URL,
            "APP_REDIS_PREFIX": f"mn-{uuid.uuid4().hex[:8]}",
            "APP_JWT_SECRET": "multinode-secret-" + uuid.uuid4().hex,
            "APP_PING_INTERVAL_S": str(PING_INTERVAL_S),
            "APP_PING_TIMEOUT_S": str(PING_TIMEOUT_S),
            "APP_MODEL_CACHE_TTL_S": "0",
            "APP_REGISTRY_NAME": f"registry-{uuid.uuid4().hex[:8]}",
            "APP_WEBHOOK_QUEUE": f"hooks-{uuid.uuid4().hex[:8]}",
        }
    )
    # The front door of scripts/start.sh (Serve's HAProxy ingress), with its own files.
    env.update(
        haproxy_env(
            Path(tempfile.mkdtemp(prefix="hapmn-", dir="/tmp")),
            metrics_port=free_port(),
            stats_port=free_port(),
            fallback_http_port=free_port(),
            fallback_grpc_port=free_port(),
        )
    )
    ray = str(Path(sys.executable).with_name("ray"))
    logs = tmp_path_factory.mktemp("multinode")
    # Short, as Ray's socket paths must be; made here, so no one else owns it.
    temp_dir = Path(tempfile.mkdtemp(prefix="raymn-", dir="/tmp"))
    gcs_port, http_port = free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (logs / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - the venv's own ray
            [ray, "start", "--block", "--disable-usage-stats", "--num-cpus", "1", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    try:
        start(
            "head",
            [
                "--head",
                "--node-ip-address", "127.0.0.1",
                "--port", str(gcs_port),
                "--resources", '{"head_node": 1}',
                "--include-dashboard", "false",
                "--temp-dir", str(temp_dir),
                *_node_ports(0),
            ],
        )  # fmt: skip
        wait_for(lambda: _port_open(gcs_port), timeout=60)

        def start_worker(address: str, slots: int) -> subprocess.Popen[bytes]:
            """A worker node on `address` with room for `slots` model replicas."""
            workers[address] = start(
                f"worker-{address}",
                [
                    "--address", f"127.0.0.1:{gcs_port}",
                    "--node-ip-address", address,
                    "--resources", f'{{"models": {slots}}}',
                    *_node_ports(1 + WORKERS.index(address)),
                ],
            )  # fmt: skip
            return workers[address]

        workers: dict[str, subprocess.Popen[bytes]] = {}
        # One slot on the first worker: of the model's two replicas one must wait for the
        # second worker, which the test starts. So both nodes run one, and the second has
        # room for the replica the first loses.
        start_worker(WORKERS[0], 1)
        deployed = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "tests.e2e.multinode_driver",
                f"127.0.0.1:{gcs_port}",
                str(http_port),
                MODEL,
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        yield Cluster(
            logs=logs,
            base_url=f"http://127.0.0.1:{http_port}",
            workers=workers,
            start_worker=start_worker,
            env=env,
        )
    finally:
        for process in reversed(processes):
            _kill_tree(process)
        # Ray's logs of every node stay with the test's own, for a failure to be read.
        shutil.copytree(temp_dir / "session_latest" / "logs", logs / "ray", dirs_exist_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait(cluster: Cluster, condition: Callable[[], object], timeout: float) -> object:
    try:
        return wait_for(condition, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; Ray's logs: {cluster.logs / 'ray'}") from None


def _login_operator(http: httpx.Client, env: dict[str, str]) -> dict[str, str]:
    """An admin (who may see where replicas run), promoted as an operator does."""
    credentials = {"login": f"ops{uuid.uuid4().hex[:8]}", "password": "multinode password"}
    assert http.post("/register", json=credentials).status_code == 201
    promote(credentials["login"], env)
    token = http.post("/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


# Its own bound (the cluster starts inside the fixture, then the kill and the drain).
@pytest.mark.timeout(900)
def test_a_worker_node_killed_while_500_tasks_drain(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.base_url, timeout=30) as http:
        headers = _login_operator(http, cluster.env)

        def replicas() -> list[dict]:
            answer = http.get(f"/models/{MODEL}", headers=headers)
            return answer.json()["replicas"] if answer.status_code == 200 else []

        # Before: the model's replicas run on both worker nodes, none on the head.
        wait_for(lambda: [r["node_address"] for r in replicas()] == [WORKERS[0]], timeout=120)
        cluster.start_worker(WORKERS[1], 2)
        spread = _wait(
            cluster,
            lambda: (
                (r := replicas()) and sorted(x["node_address"] for x in r) == list(WORKERS) and r
            ),
            timeout=120,
        )
        node_of = {r["replica_id"]: r["node_address"] for r in spread}

        bodies = [{"text": f"t{i}", "delay_ms": 400} for i in range(TASKS)]
        task_ids: list[str] = []
        for start in range(0, TASKS, 100):
            accepted = http.post(
                f"/models/{MODEL}/batches", json=bodies[start : start + 100], headers=headers
            )
            assert accepted.status_code == 202, accepted.text
            task_ids += accepted.json()["task_ids"]

        # Kill the first worker node while its replica is busy: live work is hit.
        victim = WORKERS[0]
        victim_replica = wait_for(
            lambda: next(
                (r for r in replicas() if r["node_address"] == victim and r["tasks_in_flight"]),
                None,
            ),
            timeout=60,
        )
        dead_ids = {rid for rid, address in node_of.items() if address == victim}
        # What was running a moment before the kill, and since when.
        running = wait_for(
            lambda: http.get(
                "/tasks",
                params={"model": MODEL, "status": "running", "limit": 100},
                headers=headers,
            ).json()["tasks"],
            timeout=10,
            interval=0.05,
        )
        started_before = {t["task_id"]: t["started_at"] for t in running}
        killed_at = time.monotonic()
        _kill_tree(cluster.workers[victim])

        # The registry drops the dead node's instances at their second missed ping: within two
        # ping intervals and the second ping's timeout.
        wait_for(
            lambda: not dead_ids & {r["replica_id"] for r in replicas()},
            timeout=2 * PING_INTERVAL_S + PING_TIMEOUT_S + 5,
            interval=0.1,
        )
        dropped_after = time.monotonic() - killed_at
        assert dropped_after <= 2 * PING_INTERVAL_S + PING_TIMEOUT_S + 0.5, dropped_after

        # Nothing lost or stuck: every task ends succeeded, the interrupted ones redelivered.
        def finished(task_id: str) -> dict:
            def done() -> dict | None:
                answer = http.get(
                    f"/models/{MODEL}/result",
                    params={"task_id": task_id, "wait": 10},
                    headers=headers,
                )
                return answer.json() if answer.status_code == 200 else None

            return wait_for(done, timeout=240)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            documents = list(pool.map(finished, task_ids))
        assert [d["status"] for d in documents] == ["succeeded"] * TASKS
        assert [d["result"]["text"] for d in documents] == [b["text"] for b in bodies]
        assert victim_replica["tasks_in_flight"] > 0  # the kill hit tasks that were running
        # The tasks the victim held were run again, to the end, by the surviving replica: they
        # started over after the kill (a new started_at) in another process.
        by_id = dict(zip(task_ids, documents, strict=True))
        rerun = [
            task_id
            for task_id, started in started_before.items()
            if by_id[task_id]["started_at"] > started
        ]
        assert rerun, f"no task of {sorted(started_before)} was run again after the kill"
        victim_process = f":{victim_replica['pid']}"
        assert all(not by_id[t]["result"]["replica"].endswith(victim_process) for t in rerun)

        # Serve brings the lost replica back, on the surviving node.
        survivor = next(a for a in WORKERS if a != victim)
        after = _wait(
            cluster,
            lambda: (
                (r := replicas())
                and len(r) == 2
                and {x["node_address"] for x in r} == {survivor}
                and r
            ),
            timeout=120,
        )
        assert not dead_ids & {r["replica_id"] for r in after}
