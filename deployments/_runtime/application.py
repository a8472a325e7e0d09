"""Turning an `@model` class into its Ray Serve application: the deployment's options (CPUs,
graceful shutdown, autoscaling on the queue's backlog), the settings an operator overrides in
`serve_config.yaml`, and what each replica registers about its model."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve import Application

from app.core.broker import QueueNames
from app.core.runtime_env import with_env_vars
from app.core.settings import get_settings
from deployments._contract import ModelSpec, spec_of
from deployments._runtime.replica import GRACEFUL_SHUTDOWN_TIMEOUT_S, ModelReplica
from deployments._runtime.spec import effective_spec

POLICY_PATH = "deployments._runtime.autoscaling:QueueBacklogPolicy"


# A model's application has no HTTP route: the front door (HAProxy) never sends it traffic,
# only handles (from the gateway) and its queue do. Serve still holds every stopping
# ingress replica open for a 30 s load-balancer deregistration window, which here would only
# delay scale-down and redeploys; its in-flight work is drained by the replica itself.
MODEL_SERVE_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0"}


def actor_options(spec: ModelSpec) -> dict[str, Any]:
    """The Ray options of each replica: the CPUs it reserves, its GPUs when it needs any,
    and the Serve variables of MODEL_SERVE_ENV."""
    options: dict[str, Any] = with_env_vars({"num_cpus": spec.settings.num_cpus}, MODEL_SERVE_ENV)
    if spec.settings.num_gpus:
        options["num_gpus"] = spec.settings.num_gpus
    return options


def autoscaling_config(spec: ModelSpec, amqp_url: str) -> dict[str, Any]:
    """Serve's autoscaling config for a model: its bounds, fast reaction, backlog policy.

    `metrics_interval_s` (deprecated in Serve but the knob that sets how often replicas report)
    and a short look-back let replicas react within seconds, not Serve's default 30-40 s.
    """
    settings = spec.settings
    return {
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "initial_replicas": max(1, settings.min_replicas),
        "metrics_interval_s": 0.5,
        "look_back_period_s": 2.0,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": settings.downscale_delay_s,
        "downscale_to_zero_delay_s": settings.downscale_delay_s,
        "policy": {
            "policy_function": POLICY_PATH,
            "policy_kwargs": {
                "queue": QueueNames.for_model(spec.name).work,
                "amqp_url": amqp_url,
                "target_per_replica": settings.target_tasks_per_replica,
            },
        },
    }


class AppArgs(BaseModel):
    """The `args` of a model's application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    init: dict[str, Any] = Field(default_factory=dict)


def application_from_args(model_cls: type, args: dict[str, Any]) -> Application:
    """The application Serve builds from a model's `serve_app` and its config `args`.

    Raises:
        TypeError: an unknown key, a bad setting or constructor argument, named.
    """
    where = f"serve_config.yaml args of {spec_of(model_cls).name}"
    try:
        parsed = AppArgs.model_validate(args or {})
    except ValidationError as exc:
        keys = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        raise TypeError(
            f"{where}: unknown or invalid key(s) {keys}; the keys are name, settings, init"
        ) from None
    return build_application(
        model_cls, model_name=parsed.name, overrides=parsed.settings, init=parsed.init
    )


def check_init(model_cls: type, init: dict[str, Any]) -> None:
    """Refuse constructor arguments the class does not take, naming them.

    Raises:
        TypeError: a keyword the constructor does not know, or a required one missing.
    """
    signature = inspect.signature(model_cls)
    try:
        signature.bind(**init)
    except TypeError as exc:
        known = [
            name
            for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        raise TypeError(
            f"{model_cls.__name__}(**init) from serve_config.yaml: {exc}; it takes "
            f"{', '.join(known) or 'no arguments'}"
        ) from None


def build_application(
    model_cls: type,
    *,
    model_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    init: dict[str, Any] | None = None,
    **deployment_options: Any,
) -> Application:
    """The Serve application of an `@model` class.

    Args:
        model_cls: a class decorated with `deployments.sdk.model`.
        model_name: serve the class under another model name (and queue) than its own.
        overrides: settings to change for this application (e.g. max_replicas).
        init: keyword arguments of the model's constructor.
        **deployment_options: options for `serve.deployment` overriding the model's defaults;
            `serve_config.yaml` can override them again per environment.
    """
    overrides = dict(overrides or {})
    if model_name is not None:
        overrides["name"] = model_name
    fixed = deployment_options.get("num_replicas")
    if isinstance(fixed, int):
        # A fixed count is the model's bounds too: its fair-share window and the info it
        # registers count the replicas that run, not the one @model's default allows.
        overrides["min_replicas"] = overrides["max_replicas"] = fixed
    spec = effective_spec(model_cls, overrides)
    init = dict(init or {})
    check_init(model_cls, init)
    options: dict[str, Any] = {
        "name": spec.name,
        "ray_actor_options": actor_options(spec),
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_TIMEOUT_S,
        "health_check_period_s": 10,
    }
    if spec.settings.batching:
        # Room for a full batch of synchronous calls and the next one filling (Serve's
        # default of 5 ongoing requests would cap every batch at 5).
        options["max_ongoing_requests"] = max(5, 2 * spec.settings.max_batch_size)
    if spec.settings.min_replicas == spec.settings.max_replicas:
        options["num_replicas"] = spec.settings.min_replicas
    else:
        options["autoscaling_config"] = autoscaling_config(spec, str(get_settings().amqp_url))
    options.update(deployment_options)
    # Given actor options (e.g. another num_cpus) keep the variables of MODEL_SERVE_ENV.
    options["ray_actor_options"] = with_env_vars(options["ray_actor_options"], MODEL_SERVE_ENV)
    if "num_replicas" in deployment_options:
        options.pop("autoscaling_config", None)
    deployment = serve.deployment(ModelReplica).options(**options)  # type: ignore[attr-defined]
    application: Application = deployment.bind(model_cls, overrides, init)
    return application
