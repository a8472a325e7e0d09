"""Redis helpers for fault tests."""

from __future__ import annotations

from typing import Any


async def kill_subscriber(redis: Any, prefix: str) -> int:
    """CLIENT KILL the gateway's task-notification connection(s) of `prefix`; how many."""
    clients = await redis.client_list()
    name = f"{prefix}:task-notifications"
    killed = 0
    for client in clients:
        if client.get("name") == name:
            killed += int(await redis.execute_command("CLIENT", "KILL", "ID", client["id"]))
    return killed
