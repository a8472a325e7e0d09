"""Deploys the platform onto the multi-node test cluster (run by tests/e2e/test_multinode.py
in a process of its own: a driver connects to one Ray cluster, and the test session already
has one). The gateway and the registry stay on the head; the model's replicas need the
`models` resource, which only the worker nodes have."""  # noqa: D205

from __future__ import annotations

import sys


def main(address: str, http_port: int, model: str) -> int:
    import ray
    from ray import serve

    from app.core.settings import get_settings
    from app.main import build_gateway
    from deployments.echo import Echo
    from deployments.sdk import build_app
    from registry.client import get_or_create_registry

    ray.init(address=address, log_to_driver=False)
    settings = get_settings()
    # Created from this driver, on the head: see get_or_create_registry's node affinity.
    get_or_create_registry(
        name=settings.registry_name,
        namespace=settings.registry_namespace,
        ping_interval_s=settings.ping_interval_s,
        ping_timeout_s=settings.ping_timeout_s,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": http_port, "location": "HeadOnly"})
    head = {"num_cpus": 0, "resources": {"head_node": 0.01}}
    serve.run(
        build_gateway(num_replicas=1, ray_actor_options=head), name="gateway", route_prefix="/"
    )
    # Not waited for: only one worker node exists yet, so one replica waits for the next.
    serve._run(  # noqa: SLF001 - serve.run always blocks until every replica runs
        build_app(
            Echo,
            model_name=model,
            num_replicas=2,
            ray_actor_options={"num_cpus": 0, "resources": {"models": 1}},
        ),
        _blocking=False,
        name=model,
        route_prefix=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
