"""The gateway: the FastAPI app, its error mapping, and the Ray Serve ingress deployment."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.middleware import MetricsMiddleware
from app.api.routes import auth, docs, health, models, tasks
from app.core.errors import AppError
from app.core.logging import configure_logging
from app.core.metrics import MetricsRecorder
from app.core.settings import Settings, get_settings
from app.services import Services
from registry.client import Registry

logger = logging.getLogger(__name__)

DESCRIPTION = """Submit tasks to machine-learning models and fetch their results.

1. `POST /register`, then `POST /login` (or the **Authorize** button) for a bearer token.
2. `GET /models` lists the live models; each has its own two operations below.
3. `POST /models/{name}/tasks` with the request message as JSON (proto3 JSON mapping) or
   protobuf (`Content-Type: application/x-protobuf`) returns a `task_id`.
4. `GET /models/{name}/result?task_id=...` returns 202 until the task is done, then 200.
"""


def create_app(*, settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """Build the gateway app.

    Args:
        settings: defaults to `get_settings()` (the environment).
        registry: defaults to the detached registry actor; tests pass an in-process one.
    """
    configure_logging()
    settings = settings or get_settings()
    recorder = MetricsRecorder()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The middleware and the services record into the same recorder.
        services = Services.open(settings, registry, metrics=recorder)
        app.state.services = services
        services.start_metrics_push()
        try:
            yield
        finally:
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
    for router in (auth.router, models.router, tasks.router, health.router, docs.router):
        app.include_router(router)
    docs.mount_assets(app)
    app.add_middleware(MetricsMiddleware, recorder=recorder)
    for exc_type in (AppError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, error_response)
    return app


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one place errors become HTTP answers: `{"error": code, "detail": ...}`."""
    headers: dict[str, str] | None = None
    detail: Any
    if isinstance(exc, AppError):
        status, code, detail, headers = exc.status_code, exc.code, exc.detail, exc.headers
    elif isinstance(exc, RequestValidationError):
        status, code = 422, "invalid_input"
        detail = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", "")}
            for error in exc.errors()
        ]
    elif isinstance(exc, StarletteHTTPException):
        status, detail = exc.status_code, exc.detail
        headers = dict(exc.headers) if exc.headers else None
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    else:
        status, code, detail = 500, "internal_error", "internal error"
    if status >= 500 and not isinstance(exc, AppError) or status == 500:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "internal error"
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _gateway_app() -> FastAPI:
    # Serve calls this on each replica (the FastAPI factory form of @serve.ingress), so the app
    # and its settings are built where the runtime environment variables are set.
    return create_app()


def build_gateway(**options: Any) -> Any:
    """The gateway's Serve application (what serve_config.yaml's import_path names).

    Args:
        **options: `serve.deployment` options overriding the defaults below.
    """
    from ray import serve

    defaults: dict[str, Any] = {
        "name": "gateway",
        # The gateway only waits on I/O: Serve's default of 5 throttles it hard
        # (benchmarks/RESULTS.md has both figures).
        "max_ongoing_requests": 128,
        "ray_actor_options": {"num_cpus": 0.25},
        "health_check_period_s": 10,
    }
    deployment = serve.deployment(**{**defaults, **options})(serve.ingress(_gateway_app)())
    return deployment.bind()


app = build_gateway()
