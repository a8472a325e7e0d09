"""`/openapi.json` built from the live models, and Swagger UI served from this server."""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app.api.deps import ServicesDep
from app.api.routing import BoundedJsonRoute
from app.openapi import base_openapi, with_models

router = APIRouter(include_in_schema=False, route_class=BoundedJsonRoute)
ASSETS_PATH = "/docs-assets"


def mount_assets(app: FastAPI) -> None:
    """Serve Swagger UI's JavaScript and CSS (a PyPI package ships them; no CDN needed)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), "docs")


@router.get("/openapi.json")
async def openapi(request: Request, services: ServicesDep) -> JSONResponse:
    # Built per model-set version: a model deployed or deleted shows on the next page load.
    snapshot = await services.catalog.snapshot()
    state = request.app.state
    root_path = request.scope.get("root_path", "")
    cache: dict[str, Any] | None = getattr(state, "openapi_cache", None)
    key = (snapshot.version, root_path)
    if cache is None or cache["key"] != key:
        base = getattr(state, "openapi_base", None)
        if base is None:
            base = state.openapi_base = base_openapi(request.app)
        cache = state.openapi_cache = {
            "key": key,
            "spec": with_models(
                base,
                await services.catalog.live(),
                root_path,
                max_batch=services.settings.max_batch_tasks,
            ),
        }
    return JSONResponse(cache["spec"])


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="Model serving platform",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()
