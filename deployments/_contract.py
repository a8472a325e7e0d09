"""What the public SDK and the private runtime share: a model's spec, its settings, the
errors a model raises, and the hook through which a running model reports progress.

`deployments.sdk` re-exports the public part; `deployments._runtime` imports this module and
never the SDK, so the SDK stays a leaf that model code can import without Ray.
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class InvalidInput(Exception):  # noqa: N818 - named for what the author means, like BentoML's
    """Raise from `process_request` when the request itself is wrong.

    The task fails at once (no retry) with status `failed`, error code `invalid_input` and
    this exception's message as its error text.
    """


class Retry(Exception):  # noqa: N818
    """Raise from `process_request` to ask for another attempt later (e.g. a busy dependency).

    The task is retried with backoff up to the model's `max_attempts`, then fails. Any other
    exception is retried the same way; raising `Retry` only says so explicitly.
    """


class ModelSettings(BaseModel):
    """A model's tunable settings: the author's defaults on `@model`, which an operator may
    override per environment. Each setting is declared here and nowhere else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(
        default=3, ge=1, description="Tries before a task fails for good (1 = no retry)."
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, description="Delay before the first retry; doubles on each further one."
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest one `process_request` call may run; None: no limit.",
    )
    min_replicas: int = Field(
        default=1,
        ge=0,
        description="Fewest replicas the autoscaler keeps; 0 lets an idle model scale to zero "
        "(the first queued task wakes it).",
    )
    max_replicas: int = Field(
        default=1,
        ge=1,
        description="Most replicas the autoscaler starts; equal to `min_replicas` turns "
        "autoscaling off.",
    )
    target_tasks_per_replica: int = Field(
        default=8, ge=1, description="Queued plus running tasks one replica should carry."
    )
    downscale_delay_s: float = Field(
        default=60.0, ge=0, description="How long the backlog must stay low before replicas go."
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Tasks one replica runs at once (its RabbitMQ prefetch); default "
        "`APP_PREFETCH_COUNT`. Use 1 for a model that keeps a CPU busy.",
    )
    num_cpus: float = Field(
        default=0.25,
        ge=0,
        description="CPUs Ray reserves for each replica: a quarter suits an async model that "
        "mostly waits; give a model that keeps a CPU busy 1 (and max_concurrency=1).",
    )
    num_gpus: float = Field(
        default=0,
        ge=0,
        description="GPUs Ray reserves for each replica (fractional shares one GPU); replicas "
        "then run only on nodes that have the `GPU` resource.",
    )
    max_batch_size: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Most requests in one `process_batch` call (1: no batching, each task "
        "goes to `process_request`).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.01,
        ge=0,
        le=10,
        description="How long the first request of a batch waits for more before the batch "
        "runs short.",
    )
    fair_share_window: int | None = Field(
        default=None,
        ge=1,
        description="Fair share: how many of one user's tasks may be in the model's queue at "
        "once (the rest wait their turn); default max_replicas x tasks per replica, so one "
        "user alone can keep every replica busy.",
    )
    cache_ttl_s: float | None = Field(
        default=None,
        ge=1,
        description="Answer identical requests from a cache for this long (None: no cache). "
        "Only for models whose answer depends on the request alone.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ModelSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    @classmethod
    def build(cls, where: str, values: dict[str, Any]) -> ModelSettings:
        """Validate `values`, raising `TypeError` that names `where` and the bad setting."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise TypeError(
                f"{where}: unknown setting(s) {unknown}; the settings are "
                f"{sorted(cls.model_fields)}"
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
                for error in exc.errors()
            )
            raise TypeError(f"{where}: {problems}") from None

    def replace(self, where: str, overrides: dict[str, Any]) -> ModelSettings:
        """These settings with `overrides` applied (validated as a whole)."""
        return self.build(where, {**self.model_dump(exclude_unset=False), **overrides})


OPENAI_ENDPOINTS = ("embeddings", "chat", "completions")
# Each endpoint's fields when the mapping names none: (request field, response field).
_DEFAULT_FIELDS = {
    "embeddings": ("text", "vector"),
    "chat": ("messages", "text"),
    "completions": ("prompt", "text"),
}
# Sampling parameters of a chat or completions body that reach the request message when it
# has a scalar field of that name (`max_completion_tokens` fills `max_tokens` too).
OPENAI_PARAMETERS = ("max_tokens", "temperature", "top_p", "seed")


@dataclass(frozen=True)
class OpenAIMapping:
    """How a model serves an OpenAI endpoint (`@model(openai=...)`).

    - `embeddings` (`POST /v1/embeddings`, and batch lines for it): each input text goes into
      the request's string field `input` (default `text`); the embedding is the response's
      repeated float (or double) field `output` (default `vector`).
    - `chat` (`POST /v1/chat/completions`): the conversation goes into the request's repeated
      message field `input` (default `messages`), each element with string fields `role` and
      `content`; the answer is the response's string field `output` (default `text`).
    - `completions` (`POST /v1/completions`): the prompt goes into the request's string field
      `input` (default `prompt`); the answer is the response's string field `output` (default
      `text`).

    For chat and completions a streaming model's chunks each carry the next piece of the
    answer in `output` (OpenAI's deltas); the answer is their concatenation. A request field
    named like an OpenAI sampling parameter (`max_tokens`, `temperature`, `top_p`, `seed`)
    receives the body's value.
    `@model(openai="chat")` means the defaults; `OpenAIMapping("chat", input="turns")` names
    others.
    """

    endpoint: str
    input: str = ""
    output: str = ""

    def __post_init__(self) -> None:
        if self.endpoint not in OPENAI_ENDPOINTS:
            raise TypeError(
                f"openai={self.endpoint!r} is not an OpenAI endpoint the platform serves; "
                f"use one of {list(OPENAI_ENDPOINTS)}"
            )
        default_input, default_output = _DEFAULT_FIELDS[self.endpoint]
        object.__setattr__(self, "input", self.input or default_input)
        object.__setattr__(self, "output", self.output or default_output)

    def check(self, request: type[Message], response: type[Message]) -> None:
        """Raise `TypeError`, saying what to change, unless the messages fit the mapping."""
        from google.protobuf.descriptor import FieldDescriptor

        where = f"openai={self.endpoint!r}"
        field = request.DESCRIPTOR.fields_by_name.get(self.input)
        if self.endpoint == "chat":
            turn = field.message_type if field is not None else None
            fields = turn.fields_by_name if turn is not None else {}
            if (
                field is None
                or not _repeated(field)
                or any(
                    name not in fields or fields[name].type != FieldDescriptor.TYPE_STRING
                    for name in ("role", "content")
                )
            ):
                raise TypeError(
                    f"{where}: the request {request.__name__} needs a repeated message field "
                    f"{self.input!r} whose messages have string fields `role` and `content`"
                )
        elif field is None or field.type != FieldDescriptor.TYPE_STRING or _repeated(field):
            raise TypeError(
                f"{where}: the request {request.__name__} needs a (not repeated) string field "
                f"{self.input!r} to take each input text"
            )
        answer = response.DESCRIPTOR.fields_by_name.get(self.output)
        if self.endpoint == "embeddings":
            floats = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
            if answer is None or answer.type not in floats or not _repeated(answer):
                raise TypeError(
                    f"{where}: the response {response.__name__} needs a repeated float field "
                    f"{self.output!r} holding the embedding"
                )
        elif answer is None or answer.type != FieldDescriptor.TYPE_STRING or _repeated(answer):
            raise TypeError(
                f"{where}: the response {response.__name__} needs a (not repeated) string "
                f"field {self.output!r} holding the answer (or, streamed, its next piece)"
            )

    @classmethod
    def of(cls, value: str | OpenAIMapping | None) -> OpenAIMapping | None:
        if value is None or isinstance(value, OpenAIMapping):
            return value
        if isinstance(value, str):
            return cls(value)
        raise TypeError(f"openai= takes an endpoint name or an OpenAIMapping, not {value!r}")


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated)


@dataclass(frozen=True)
class ModelSpec:
    """Everything `@model` learned about a model class."""

    name: str
    request: type[Message]
    response: type[Message]
    description: str
    settings: ModelSettings = ModelSettings()
    # Shown in /models, task documents and OIP metadata; part of the cache key.
    version: str = "0"
    # The OpenAI endpoint the model serves, if any (`/v1/embeddings`...).
    openai: OpenAIMapping | None = None
    # `process_request` is an async generator: it yields response messages (chunks).
    streams: bool = False


def check_name(name: object) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TypeError(
            f"model name {name!r} is invalid: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter (it becomes a URL segment and a queue name)"
        )


def spec_of(cls: type) -> ModelSpec:
    """The `ModelSpec` of a class decorated with `@model`."""
    spec = getattr(cls, "__model_spec__", None)
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"{cls!r} is not decorated with @model")
    return spec


# How the task now running in this context reports progress: set by the runtime around each
# `process_request` call, absent (a no-op) when a model runs outside the platform.
ProgressReporter = Callable[[float, str], Awaitable[None]]
progress_reporter: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar(
    "progress_reporter", default=None
)


def check_batching(cls: type, spec: ModelSpec) -> None:
    """Refuse batch settings the class cannot serve, and a `process_batch` of the wrong shape.

    Raises:
        TypeError: what to change, naming the class and the setting.
    """
    method = getattr(cls, "process_batch", None)
    where = f"{cls.__qualname__} (model {spec.name!r})"
    if spec.streams and spec.settings.batching:
        raise TypeError(
            f"{where}: a streaming process_request (an async generator) cannot be batched; "
            "set max_batch_size=1"
        )
    if method is None:
        if spec.settings.batching:
            raise TypeError(
                f"{where}: max_batch_size={spec.settings.max_batch_size} needs a method "
                f"`async def process_batch(self, requests: list[{spec.request.__name__}]) -> "
                f"list[{spec.response.__name__} | Exception]`; add it or set max_batch_size=1"
            )
        return
    if not inspect.iscoroutinefunction(method):
        raise TypeError(f"{where}: process_batch must be `async def`")
    if len(inspect.signature(method).parameters) != 2:
        raise TypeError(
            f"{where}: process_batch must take exactly one argument besides self: the list "
            f"of {spec.request.__name__} messages"
        )
