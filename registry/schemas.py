"""Data the registry keeps and hands out; plain dataclasses so they cross Ray calls cheaply."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any


class PingResult(enum.Enum):
    """What asking an instance whether it is alive found."""

    ALIVE = "alive"
    GONE = "gone"  # the actor is dead or no longer exists
    TIMEOUT = "timeout"  # no answer in time, or an unhealthy one


class RegistrationRefused(Exception):  # noqa: N818 - reads as what happened to the caller
    """A model of that name already exists with other request/response types."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model instance declares about its model when it registers."""

    name: str
    request_type: str
    response_type: str
    # A serialized FileDescriptorSet holding both message types and their imports, so the
    # gateway can build, parse and document the messages without the model's code.
    descriptor_set: bytes
    fingerprint: str
    description: str = ""
    # Serve application running the model; with `scale_to_zero` the registry keeps the model
    # listed (accepting tasks) while it has no instance, for as long as that app exists.
    app_name: str = ""
    scale_to_zero: bool = False
    version: str = "0"
    # Serve deployment running the model (the gateway calls it by handle for /infer).
    deployment: str = ""
    # > 0: identical requests are answered from a cache for this many seconds.
    cache_ttl_s: float = 0.0
    # > 0: the longest one model call may take (its `timeout_s`).
    timeout_s: float = 0.0
    # Fair share: how many of one user's tasks may be in the model's queue at once (0: the
    # gateway's default).
    fair_share_window: int = 0
    # The OpenAI endpoint it serves ("embeddings"; "" for none), and the request field that
    # takes an input and the response field that holds the output.
    openai_endpoint: str = ""
    openai_input: str = ""
    openai_output: str = ""
    # `process_request` is an async generator: its output comes in chunks (README, "Streaming").
    streams: bool = False


@dataclass(frozen=True)
class InstanceInfo:
    """One running instance (a Serve replica) of a model."""

    instance_id: str
    # Name of the replica's Ray actor in the "serve" namespace, used to ping it; empty for
    # an instance outside Serve, which then stays alive only by re-registering in time.
    actor_name: str = ""
    # The ping interval and timeout this instance was configured with (APP_PING_INTERVAL_S,
    # APP_PING_TIMEOUT_S): the registry, which outlives redeploys, follows the latest.
    ping_interval_s: float = 0.0
    ping_timeout_s: float = 0.0


@dataclass(frozen=True)
class ReplicaStatus:
    """What a replica reports about itself with every registration: where it runs, what it
    costs and what it did. Times are epoch seconds, memory is in bytes."""

    node_id: str = ""
    node_address: str = ""
    pid: int = 0
    state: str = "running"  # running, draining (stopping), refused
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    started_at: float = 0.0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    tasks_in_flight: int = 0
    node_memory_total_bytes: int = 0
    node_memory_available_bytes: int = 0

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> ReplicaStatus:
        """From the dict a replica sends; fields of a newer or older release are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in report.items() if k in known})


@dataclass
class InstanceState:
    info: InstanceInfo
    registered_at: float
    last_seen: float
    missed_pings: int = 0
    status: ReplicaStatus | None = None
    # What this instance said about its model (a rolling update runs old and new side by side).
    model: ModelInfo | None = None
    # Registrations before this one: orders instances registered within the same clock tick.
    order: int = 0


@dataclass(frozen=True)
class InstanceDetail:
    """One live instance as the registry knows it: its latest report and last sign of life."""

    instance_id: str
    registered_at: float
    last_seen: float
    missed_pings: int
    status: ReplicaStatus | None


@dataclass
class ModelRecord:
    # The model as its newest instance describes it (kept after the last one goes, for a
    # model that scales to zero).
    info: ModelInfo
    instances: dict[str, InstanceState] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelView:
    """A live model as the gateway sees it."""

    name: str
    request_type: str
    response_type: str
    descriptor_set: bytes
    fingerprint: str
    description: str
    instances: int
    # Listed with no instance because it scales to zero: tasks are accepted and wake it.
    dormant: bool = False
    version: str = "0"
    app_name: str = ""
    deployment: str = ""
    cache_ttl_s: float = 0.0
    timeout_s: float = 0.0
    fair_share_window: int = 0
    openai_endpoint: str = ""
    openai_input: str = ""
    openai_output: str = ""
    streams: bool = False


@dataclass(frozen=True)
class Snapshot:
    """The registry's live models, with a version that changes whenever the set changes.

    `incarnation` names this registry's life (a restarted registry starts empty, with a new
    one) and `age_s` how long it has lived: a young, new incarnation does not know yet every
    instance, which re-registers within one ping interval.
    """

    version: int
    models: tuple[ModelView, ...]
    incarnation: str = ""
    age_s: float = 0.0
