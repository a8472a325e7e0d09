"""The one module a model author imports: the `@model` decorator and the errors a model may raise.

Example:
    ```python
    from deployments.sdk import InvalidInput, build_app, model
    from protos.example_pb2 import ExampleModelRequest, ExampleModelResponse

    @model(name="summarizer", request=ExampleModelRequest, response=ExampleModelResponse)
    class Summarizer:
        \"\"\"Extractive summary of a text document.\"\"\"

        async def process_request(self, request: ExampleModelRequest) -> ExampleModelResponse:
            if not request.file.content:
                raise InvalidInput("file.content must not be empty")
            return ExampleModelResponse(summary=...)

    app = build_app(Summarizer)  # what serve_config.yaml's import_path names
    ```

The decorated class stays an ordinary class: `await Summarizer().process_request(req)` works in
plain pytest with no Ray, RabbitMQ or Redis.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["InvalidInput", "ModelSpec", "Retry", "build_app", "model"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

_T = TypeVar("_T", bound=type)

# name -> qualified class name, to refuse two classes claiming one model name in a process.
_NAMES: dict[str, str] = {}


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


@dataclass(frozen=True)
class ModelSpec:
    """Everything `@model` learned about a model class; defaults an operator may override."""

    name: str
    request: type[Message]
    response: type[Message]
    description: str
    max_attempts: int = 3
    retry_backoff_s: float = 1.0
    timeout_s: float | None = None
    min_replicas: int = 1
    max_replicas: int = 1
    target_tasks_per_replica: int = 8
    downscale_delay_s: float = 60.0
    max_concurrency: int | None = None
    num_cpus: float = 0.5
    extra_ray_actor_options: dict[str, Any] = field(default_factory=dict)


def model(
    *,
    name: str,
    request: type[Message],
    response: type[Message],
    description: str | None = None,
    max_attempts: int = 3,
    retry_backoff_s: float = 1.0,
    timeout_s: float | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    target_tasks_per_replica: int = 8,
    downscale_delay_s: float = 60.0,
    max_concurrency: int | None = None,
    num_cpus: float = 0.5,
) -> Callable[[_T], _T]:
    """Declare a class as a servable model.

    Args:
        name: the model's public name: its URL segment and its RabbitMQ queue. Lowercase
            letters, digits, `-` and `_`, starting with a letter, at most 63 characters.
        request: the protobuf message class `process_request` receives.
        response: the protobuf message class `process_request` returns.
        description: shown in `GET /models` and on Swagger; defaults to the class docstring.
        max_attempts: how many times a task is tried before it fails for good (1 = no retry).
        retry_backoff_s: delay before the first retry; doubles on each further retry.
        timeout_s: longest a single `process_request` call may run; None for no limit.
        min_replicas: fewest replicas the autoscaler keeps; 0 lets an idle model scale to
            zero (the first queued task wakes it).
        max_replicas: most replicas the autoscaler starts; equal to `min_replicas` turns
            autoscaling off.
        target_tasks_per_replica: queued plus running tasks one replica should carry.
        downscale_delay_s: how long the backlog must stay low before replicas are removed.
        max_concurrency: tasks one replica runs at once (its RabbitMQ prefetch); defaults to
            `APP_PREFETCH_COUNT`. Use 1 for a model that keeps a CPU busy.
        num_cpus: CPUs Ray reserves for each replica.

    Returns:
        A class decorator that validates the class and returns it unchanged but for a
        `__model_spec__` attribute; `build_app(cls)` makes the Serve application of it.

    Raises:
        TypeError: the class or an argument is not usable, with what to change.
    """
    check_name(name)
    for role, cls in (("request", request), ("response", response)):
        if not (isinstance(cls, type) and issubclass(cls, Message) and cls is not Message):
            raise TypeError(
                f"@model(name={name!r}): {role}= must be a generated protobuf message class "
                f"(e.g. from protos.example_pb2 import ExampleModelRequest), got {cls!r}"
            )
    if max_attempts < 1:
        raise TypeError(f"@model(name={name!r}): max_attempts must be at least 1")
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise TypeError(
            f"@model(name={name!r}): need 0 <= min_replicas <= max_replicas and max_replicas >= 1"
        )
    if max_concurrency is not None and max_concurrency < 1:
        raise TypeError(f"@model(name={name!r}): max_concurrency must be at least 1")
    if target_tasks_per_replica < 1:
        raise TypeError(f"@model(name={name!r}): target_tasks_per_replica must be at least 1")

    def decorate(cls: _T) -> _T:
        if not inspect.isclass(cls):
            raise TypeError(f"@model(name={name!r}) decorates a class, not {cls!r}")
        method = getattr(cls, "process_request", None)
        if method is None:
            raise TypeError(
                f"{cls.__qualname__} needs a method "
                f"`async def process_request(self, request: {request.__name__}) -> "
                f"{response.__name__}`"
            )
        if not inspect.iscoroutinefunction(method):
            raise TypeError(
                f"{cls.__qualname__}.process_request must be `async def`; run blocking work "
                "inside it with `await asyncio.to_thread(...)`"
            )
        if len(inspect.signature(method).parameters) != 2:
            raise TypeError(
                f"{cls.__qualname__}.process_request must take exactly one argument besides "
                f"self: the {request.__name__} message"
            )
        qualified = f"{cls.__module__}.{cls.__qualname__}"
        if _NAMES.setdefault(name, qualified) != qualified:
            raise TypeError(
                f"model name {name!r} is already used by {_NAMES[name]}; pick another name"
            )
        spec = ModelSpec(
            name=name,
            request=request,
            response=response,
            description=_unwrap(description or inspect.getdoc(cls) or ""),
            max_attempts=max_attempts,
            retry_backoff_s=retry_backoff_s,
            timeout_s=timeout_s,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            target_tasks_per_replica=target_tasks_per_replica,
            downscale_delay_s=downscale_delay_s,
            max_concurrency=max_concurrency,
            num_cpus=num_cpus,
        )
        cls.__model_spec__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


def _unwrap(text: str) -> str:
    """Join a docstring's wrapped lines, keeping its paragraphs."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip())


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


def build_app(
    cls: type,
    *,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    **deployment_options: Any,
) -> Application:
    """The Ray Serve application running `cls` (what `serve_config.yaml`'s import_path names).

    Args:
        cls: a class decorated with `@model`.
        model_name: serve it under another model name (and queue), e.g. to run one class
            twice with different settings.
        overrides: `@model` arguments to change for this application only, e.g.
            `{"max_replicas": 8, "max_concurrency": 2}`.
        **deployment_options: `serve.deployment` options overriding the model's defaults
            (`serve_config.yaml` can override them again per environment).

    Raises:
        TypeError: `cls` is not decorated with `@model`, or `model_name` or an override is
            invalid.
    """
    # Imported here so that defining and unit-testing a model never imports Ray.
    from deployments._runtime.replica import build_application

    return build_application(cls, model_name=model_name, overrides=overrides, **deployment_options)
