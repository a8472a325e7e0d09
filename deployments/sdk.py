"""The one module a model author imports: the `@model` decorator and the errors a model may raise.

Example:
    ```python
    from deployments.sdk import InvalidInput, model, serve_app
    from protos.example_pb2 import ExampleModelRequest, ExampleModelResponse

    @model(name="summarizer", request=ExampleModelRequest, response=ExampleModelResponse)
    class Summarizer:
        \"\"\"Extractive summary of a text document.\"\"\"

        async def process_request(self, request: ExampleModelRequest) -> ExampleModelResponse:
            if not request.file.content:
                raise InvalidInput("file.content must not be empty")
            return ExampleModelResponse(summary=...)

    app = serve_app(Summarizer)  # what serve_config.yaml's import_path names
    ```

A `process_request` that is an async generator streams (README, "Streaming"): each response
message it yields is a chunk that reaches clients as it is produced, and the task's result is
the chunks merged in order: strings and bytes joined, repeated fields added up, any other
field set in a later chunk replacing the value before.

The decorated class stays an ordinary class: `await Summarizer().process_request(req)` works in
plain pytest with no Ray, RabbitMQ or Redis.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message

from deployments._contract import (
    InvalidInput,
    ModelSettings,
    ModelSpec,
    OpenAIMapping,
    Retry,
    check_batching,
    check_name,
    progress_reporter,
    spec_of,
)

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = [
    "InvalidInput",
    "ModelSettings",
    "ModelSpec",
    "OpenAIMapping",
    "Retry",
    "build_app",
    "model",
    "report_progress",
    "serve_app",
    "spec_of",
]

_T = TypeVar("_T", bound=type)

# name -> qualified class name, to refuse two classes claiming one model name in a process.
_NAMES: dict[str, str] = {}


def model(
    *,
    name: str,
    request: type[Message],
    response: type[Message],
    description: str | None = None,
    version: str | None = None,
    openai: str | OpenAIMapping | None = None,
    **settings: Any,
) -> Callable[[_T], _T]:
    """Declare a class as a servable model.

    Args:
        name: the model's public name: its URL segment and its RabbitMQ queue. Lowercase
            letters, digits, `-` and `_`, starting with a letter, at most 63 characters.
        request: the protobuf message class `process_request` receives.
        response: the protobuf message class `process_request` returns.
        description: shown in `GET /models` and on Swagger; defaults to the class docstring.
        version: the model's version, shown in `GET /models`, task documents and OIP metadata;
            defaults to the class's `__version__`, else "0".
        openai: the OpenAI endpoint the model also serves under `/v1` (README, "OpenAI
            API"): `"embeddings"` maps each input text to the request's string field `text`
            and the embedding to the response's repeated float field `vector`; `"chat"` the
            conversation to the repeated field `messages` (each with `role` and `content`)
            and the answer to the string field `text`; `"completions"` the prompt to the
            string field `prompt` and the answer to `text`;
            `OpenAIMapping("embeddings", input=..., output=...)` names other fields.
        **settings: defaults of the model's settings, each a field of `ModelSettings`
            (`max_attempts`, `retry_backoff_s`, `timeout_s`, `min_replicas`, `max_replicas`,
            `target_tasks_per_replica`, `downscale_delay_s`, `max_concurrency`, `num_cpus`,
            `num_gpus`, `max_batch_size`, `batch_wait_timeout_s`, `cache_ttl_s`); an operator
            may override them per environment in `serve_config.yaml`. With
            `max_batch_size` > 1 the class also defines
            `async def process_batch(self, requests: list[Req]) -> list[Resp | Exception]`:
            queued tasks (and synchronous calls) reach it in groups, each keeping its own
            outcome; an item may be an exception (e.g. `InvalidInput`) to fail that task alone.

    Returns:
        A class decorator that validates the class and returns it unchanged but for a
        `__model_spec__` attribute; `serve_app(cls)` is what its file exports for
        `serve_config.yaml`, `build_app(cls)` builds the Serve application in code.

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
    model_settings = ModelSettings.build(f"@model(name={name!r})", settings)
    mapping = OpenAIMapping.of(openai)
    if mapping is not None:
        try:
            mapping.check(request, response)
        except TypeError as exc:
            raise TypeError(f"@model(name={name!r}): {exc}") from None

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
        streams = inspect.isasyncgenfunction(method)
        if not (streams or inspect.iscoroutinefunction(method)):
            raise TypeError(
                f"{cls.__qualname__}.process_request must be `async def` (returning the "
                "response, or yielding responses to stream them); run blocking work inside "
                "it with `await asyncio.to_thread(...)`"
            )
        if len(inspect.signature(method).parameters) != 2:
            raise TypeError(
                f"{cls.__qualname__}.process_request must take exactly one argument besides "
                f"self: the {request.__name__} message"
            )
        spec = ModelSpec(
            name=name,
            request=request,
            response=response,
            description=_unwrap(description or inspect.getdoc(cls) or ""),
            settings=model_settings,
            version=str(version if version is not None else getattr(cls, "__version__", "0")),
            openai=mapping,
            streams=streams,
        )
        check_batching(cls, spec)
        qualified = f"{cls.__module__}.{cls.__qualname__}"
        if _NAMES.setdefault(name, qualified) != qualified:
            raise TypeError(
                f"model name {name!r} is already used by {_NAMES[name]}; pick another name"
            )
        cls.__model_spec__ = spec  # type: ignore[attr-defined]
        return cls

    return decorate


async def report_progress(fraction: float, message: str = "") -> None:
    """Tell the task's waiters how far `process_request` has come.

    The report shows in the task document (`progress`) and reaches server-sent event streams
    at once. Call it as often as you like: reports are coalesced. Outside the platform (a unit
    test calling `process_request` directly) it does nothing.

    Args:
        fraction: share of the work done, 0 to 1 (clamped).
        message: a short note (at most 200 characters are kept).
    """
    reporter = progress_reporter.get()
    if reporter is not None:
        await reporter(min(1.0, max(0.0, float(fraction))), str(message)[:200])


def _unwrap(text: str) -> str:
    """Join a docstring's wrapped lines, keeping its paragraphs."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip())


def serve_app(cls: type) -> Callable[[dict[str, Any]], Application]:
    """What a model's file exports as `app` (the `import_path` of `serve_config.yaml`).

    Serve calls it with the application's `args` from `serve_config.yaml`, all optional::

        args:
          init: {max_sentences: 2}        # keyword arguments of the class's constructor
          settings: {max_replicas: 4}     # @model settings for this environment
          name: summarizer-long           # serve it under another model name (and queue)

    A key the constructor or the settings do not know stops the deploy with an error that
    names it. The deployment's `user_config` (in its `deployments:` entry) goes to the model's
    `reconfigure(self, config)` at start and on every `serve deploy` that changes it, without
    restarting the replicas.

    Raises:
        TypeError: `cls` is not decorated with `@model`.
    """
    spec_of(cls)  # fail at import, not at deploy

    def app(args: dict[str, Any]) -> Application:
        from deployments._runtime.application import application_from_args

        return application_from_args(cls, args)

    app.__name__ = app.__qualname__ = f"serve_app_{cls.__name__}"
    return app


def build_app(
    cls: type,
    *,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    **deployment_options: Any,
) -> Application:
    """The Ray Serve application running `cls`, built in code (tests, notebooks, scripts).

    Args:
        cls: a class decorated with `@model`.
        model_name: serve it under another model name (and queue), e.g. to run one class
            twice with different settings.
        overrides: `@model` settings to change for this application only, e.g.
            `{"max_replicas": 8, "max_concurrency": 2}`.
        init: keyword arguments of the class's constructor.
        **deployment_options: `serve.deployment` options overriding the model's defaults.

    Raises:
        TypeError: `cls` is not decorated with `@model`, or a name, setting or constructor
            argument is invalid.
    """
    # Imported here so that defining and unit-testing a model never imports Ray.
    from deployments._runtime.application import build_application

    return build_application(
        cls, model_name=model_name, overrides=overrides, init=init, **deployment_options
    )
