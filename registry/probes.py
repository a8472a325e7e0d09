"""How the registry learns whether instances are alive: Ray calls, kept apart from the
registry's logic (`registry.state`) so the actor takes them as an injected dependency and
tests give it their own."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from registry.schemas import PingResult

logger = logging.getLogger(__name__)

SERVE_NAMESPACE = "serve"


class Probes(Protocol):
    """What the registry's ping loop asks the world."""

    async def ping(self, actor_name: str, timeout_s: float) -> PingResult: ...

    async def serve_applications(self) -> set[str] | None: ...


class RayProbes:
    """Probes over Ray: replica actors by name, and Serve's list of applications."""

    async def ping(self, actor_name: str, timeout_s: float) -> PingResult:
        return await ping_replica(actor_name, timeout_s)

    async def serve_applications(self) -> set[str] | None:
        return await serve_applications()


async def serve_applications() -> set[str] | None:
    """Names of the Serve applications that exist now; None when Serve cannot tell."""
    from ray import serve

    try:
        status = await asyncio.to_thread(serve.status)
    except Exception as exc:
        logger.warning("cannot read Serve status: %s", exc)
        return None
    return set(status.applications)


async def ping_replica(actor_name: str, timeout_s: float) -> PingResult:
    """Ask a Serve replica's actor whether it is healthy.

    Uses the replica actor's `check_health`, which runs the model deployment's own
    `check_health` (False while its consumer is disconnected). This is a private Ray Serve
    method: Ray is pinned, and an integration test covers this call.
    """
    import ray
    from ray.exceptions import RayActorError

    try:
        actor = ray.get_actor(actor_name, namespace=SERVE_NAMESPACE)
    except ValueError:
        return PingResult.GONE
    try:
        await asyncio.wait_for(actor.check_health.remote(), timeout=timeout_s)
    except RayActorError:
        return PingResult.GONE
    except TimeoutError:
        return PingResult.TIMEOUT
    except Exception as exc:  # the replica answered, but unhealthy
        logger.info("replica %s is unhealthy: %s", actor_name, exc)
        return PingResult.TIMEOUT
    return PingResult.ALIVE
