"""The route class every router uses: a cap on the body's size, and on its JSON's nesting.

Size: each route has a cap, fixed or read from a setting (`bounded_route` makes the route
class of a router whose routes take more than the default). A body whose Content-Length is
over it is refused (413) before any of it is read; one streamed without a length is refused
as soon as it passes the cap.

Nesting: FastAPI parses a route's JSON body with Starlette's `Request.json()`; here that goes
through `protos.codec.load_json`, so a body nested deeper than `MAX_JSON_DEPTH` is a 400 naming
the limit (never a recursion error deep in a validator, and never a 500), on every route alike.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from protos.codec import DecodeFailed, load_json


class BoundedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = load_json(await self.body())
            except DecodeFailed as exc:
                raise HTTPException(status_code=400, detail=str(exc)) from exc
        return self._json


class BodyTooLarge(HTTPException):
    """A body over its route's cap (the app's error handler answers 413 `payload_too_large`)."""

    def __init__(self, cap: int) -> None:
        super().__init__(status_code=413, detail=f"body exceeds {cap} bytes")


# The cap of routes that take small JSON bodies or none (admin, account...).
DEFAULT_BODY_CAP_BYTES = 64 * 1024


class BoundedJsonRoute(APIRoute):
    fixed_cap: int = DEFAULT_BODY_CAP_BYTES
    # A `Settings` field holding the cap instead (the app's settings, `app.state.settings`).
    cap_setting: str | None = None

    def body_cap(self, request: Request) -> int:
        if self.cap_setting is None:
            return self.fixed_cap
        return int(getattr(request.app.state.settings, self.cap_setting))

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            cap = self.body_cap(request)
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise BodyTooLarge(cap)
            size = 0
            receive = request.receive

            async def capped() -> Message:
                nonlocal size
                message = await receive()
                if message["type"] == "http.request":
                    size += len(message.get("body", b""))
                    if size > cap:
                        raise BodyTooLarge(cap)
                return message

            return await handler(BoundedJsonRequest(request.scope, capped))

        return bounded


def bounded_route(*, cap: int | None = None, setting: str | None = None) -> type[BoundedJsonRoute]:
    """The route class of a router whose bodies are capped at `cap` bytes, or at the value of
    the settings field `setting`."""
    return type(
        "BoundedJsonRoute",
        (BoundedJsonRoute,),
        {"fixed_cap": cap or DEFAULT_BODY_CAP_BYTES, "cap_setting": setting},
    )
