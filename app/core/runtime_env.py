"""Serve variables a deployment's replicas must run with, whatever actor options a caller
gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def with_env_vars(actor_options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`actor_options` with `env` added to its runtime environment's variables (the options'
    own variables of the same names win)."""
    options = dict(actor_options)
    runtime_env = dict(options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
    options["runtime_env"] = runtime_env
    return options
