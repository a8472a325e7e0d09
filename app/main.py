"""The gateway: the FastAPI app, its error mapping, and the Ray Serve ingress deployment."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.middleware import MetricsMiddleware
from app.api.routes import (
    account,
    admin,
    auth,
    docs,
    health,
    infer,
    models,
    results,
    tasks,
)
from app.core.broker import BrokerError
from app.core.errors import AppError, PayloadTooLarge, Unavailable
from app.core.logging import configure_logging
from app.core.metrics import MetricsRecorder
from app.core.redis_scripts import StoreError
from app.core.runtime_env import with_env_vars
from app.core.settings import Settings, get_settings
from app.inference.caller import Replicas
from app.oip import routes as oip_routes
from app.oip.routes import oip_error_body
from app.openai import routes as openai_routes
from app.openai.errors import openai_error_body, param_of
from app.services import Services
from registry.client import Registry, RegistryUnavailable

logger = logging.getLogger(__name__)

# Python's defaults are (700, 10, 10).
GC_THRESHOLDS = (1000, 10, 1000)

DESCRIPTION = """Submit tasks to machine-learning models and fetch their results.

1. `POST /register`, then `POST /login` (or the **Authorize** button) for a bearer token.
2. `GET /models` lists the live models; each has its own operations below.
3. `POST /models/{name}/tasks` with the request message as JSON (proto3 JSON mapping) or
   protobuf (`Content-Type: application/x-protobuf`) returns a `task_id`
   (`POST /models/{name}/batches` takes many at once).
4. `GET /models/{name}/result?task_id=...&wait=10` returns 202 until the task is done, then
   200; `GET /models/{name}/tasks/{task_id}/events` streams every change (server-sent events);
   a `callback_url` on the submit gets the final document POSTed to it.
"""


def quiet_garbage_collector() -> None:
    """Keep full garbage collections from stalling a replica that holds many requests.

    A gateway replica holding thousands of waiting requests has millions of live objects, and
    a full (generation 2) collection walked all of them in 0.1-0.75 s, finding almost nothing,
    while every request on the replica waited. Objects made at start-up are frozen out of
    collections, and full collections run less often (cyclic garbage is still collected).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])


def create_app(
    *,
    settings: Settings | None = None,
    registry: Registry | None = None,
    replicas: Replicas | None = None,
) -> FastAPI:
    """Build the gateway app.

    Args:
        settings: defaults to `get_settings()` (the environment).
        registry: defaults to the detached registry actor; tests pass an in-process one.
        replicas: how synchronous calls reach models; defaults to Serve handles.
    """
    configure_logging()
    settings = settings or get_settings()
    recorder = MetricsRecorder()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The middleware and the services record into the same recorder.
        quiet_garbage_collector()
        services = Services.open(settings, registry, metrics=recorder, replicas=replicas)
        app.state.services = services
        services.start()
        # Imported here: its protocol's messages (package `inference`) would clash in the
        # protobuf pool with tritonclient's in a process that imports this module to deploy
        # the gateway and calls it with tritonclient (a test, a script).
        from app.oip.grpc.server import start_grpc, stop_grpc

        grpc_server = None
        try:
            grpc_server = await start_grpc(services, settings)
            yield
        finally:
            await stop_grpc(grpc_server)
            await services.close()

    app = FastAPI(
        title="Model serving platform",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /openapi.json are served by app.api.routes.docs: the schema grows with
        # the live models, and Swagger UI's assets come from this server, not a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # The routes' body caps (app.api.routing) read the settings from here.
    app.state.settings = settings
    routers = (
        auth.router,
        account.router,
        models.router,
        tasks.router,
        tasks.batch_router,
        results.router,
        infer.router,
        oip_routes.router,
        health.router,
        admin.router,
        admin.status_router,
        openai_routes.router,
        openai_routes.files_router,
        docs.router,
    )
    for router in routers:
        app.include_router(router)
    docs.mount_assets(app)
    app.add_middleware(MetricsMiddleware, recorder=recorder)
    # Infrastructure errors get handlers of their own: the catch-all `Exception` handler runs
    # in Starlette's outermost middleware, which re-raises after answering.
    handled = (AppError, RequestValidationError, StarletteHTTPException)
    for exc_type in (*handled, *(t for t, _ in UNAVAILABLE), Exception):
        app.add_exception_handler(exc_type, error_response)
    return app


# Infrastructure failures a route lets through: each is a 503 with Retry-After.
UNAVAILABLE: tuple[tuple[type[BaseException], str], ...] = (
    (StoreError, "the result store is unavailable"),
    (BrokerError, "the message broker is unavailable"),
    (RegistryUnavailable, "the model registry is unavailable"),
    (TimeoutError, "a dependency did not answer in time"),
)


def as_app_error(exc: Exception) -> Exception:
    """An infrastructure failure as the `Unavailable` it means for a client."""
    for exc_type, detail in UNAVAILABLE:
        if isinstance(exc, exc_type):
            logger.warning("%s: %s", detail, exc)
            return Unavailable(detail)
    return exc


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one place errors become HTTP answers: `{"error": code, "detail": ...}`."""
    headers: dict[str, str] | None = None
    detail: Any
    exc = as_app_error(exc)
    if isinstance(exc, AppError):
        status, code, detail, headers = exc.status_code, exc.code, exc.detail, exc.headers
    elif isinstance(exc, RequestValidationError):
        status, code = 422, "invalid_input"
        detail = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", "")}
            for error in exc.errors()
        ]
    elif isinstance(exc, StarletteHTTPException) and exc.status_code == 413:
        status, code, detail = 413, PayloadTooLarge.code, exc.detail  # a route's body cap
    elif isinstance(exc, StarletteHTTPException):
        status, detail = exc.status_code, exc.detail
        headers = dict(exc.headers) if exc.headers else None
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        if status == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
    else:
        status, code, detail = 500, "internal_error", "internal error"
    if status >= 500 and not isinstance(exc, AppError) or status == 500:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "internal error"
    route = getattr(request.scope.get("route"), "path", "") or request.url.path
    if route.startswith("/v2"):  # the Open Inference Protocol's own error shape
        return JSONResponse(oip_error_body(detail), status_code=status, headers=headers)
    if route.startswith("/v1/"):  # OpenAI's
        body = openai_error_body(status, code, detail, param_of(exc))
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route serves on the request's path: Starlette's 405 names only the
    first matching route's, where several routes (GET and POST /v1/files) share a path."""
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


def _gateway_app() -> FastAPI:
    # Serve calls this on each replica (the FastAPI factory form of @serve.ingress), so the app
    # and its settings are built where the runtime environment variables are set.
    return create_app()


# How the gateway's replicas run inside Serve (measured in benchmarks/RESULTS.md):
GATEWAY_SERVE_ENV = {
    # Its code never blocks its loop (password hashing runs in threads), so it runs on the
    # replica's own loop: Serve's default, a loop of its own in another thread, costs a
    # thread hop for every message of every request (about a fifth of the submit rate).
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # Handle calls to models (/infer, OIP) are routed on the same loop, and travel to the
    # model's replica over gRPC instead of Ray actor calls: together about three times the
    # synchronous calls per second.
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
}


def build_gateway(**options: Any) -> Any:
    """The gateway's Serve application (what serve_config.yaml's import_path names): the
    FastAPI ingress and, bound to it, the webhook dispatcher.

    Args:
        **options: `serve.deployment` options of the ingress overriding the defaults below.
    """
    from ray import serve

    from app.webhooks.replica import WebhookReplica

    defaults: dict[str, Any] = {
        "name": "gateway",
        # A request waiting for a result (long-poll, event stream) costs an idle coroutine,
        # not CPU: a replica holds thousands. Serve's default of 5 would queue them.
        "max_ongoing_requests": 4096,
        # Serve's own autoscaler on ongoing requests (idle waiters included): another
        # replica per `target_ongoing_requests` of them.
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 1000,
            "upscale_delay_s": 5,
            "downscale_delay_s": 60,
        },
        # Ray's CPUs are a reservation, not a limit: the gateway waits on I/O, and a small
        # share leaves room on a 2-core machine for the models users add.
        "ray_actor_options": {"num_cpus": 0.1},
        "health_check_period_s": 10,
        # Serve's access log line per request cost a tenth of a submit's CPU in a profile;
        # the gateway's own metrics time every route (turn it on in serve_config.yaml with
        # logging_config: {enable_access_log: true}).
        "logging_config": {"enable_access_log": False},
    }
    options = {**defaults, **options}
    # Whatever actor options the caller gives, the replicas keep running as GATEWAY_SERVE_ENV
    # says (its own variables of the same names win).
    options["ray_actor_options"] = with_env_vars(options["ray_actor_options"], GATEWAY_SERVE_ENV)
    if "num_replicas" in options:
        options.pop("autoscaling_config", None)
    webhooks = serve.deployment(
        name="webhooks",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        graceful_shutdown_timeout_s=15,
        health_check_period_s=10,
    )(WebhookReplica)
    deployment = serve.deployment(**options)(serve.ingress(_gateway_app)())
    return deployment.bind(webhooks.bind())


app = build_gateway()
