"""The gateway's OpenAPI document: the static routes plus two operations per live model.

Model schemas come from the descriptors in the registry (`protos.json_schema`), so the schema
shown is built from the same descriptor the gateway validates JSON bodies with.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from google.protobuf.message import Message

from app.catalog.catalog import LiveModel
from protos.codec import PROTOBUF_CONTENT_TYPE
from protos.json_schema import component_name, example, message_schemas

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
SECURITY: list[dict[str, list[str]]] = [{"OAuth2PasswordBearer": []}]
_BINARY = {"type": "string", "format": "binary"}


def _descriptor(message_cls: type[Message]) -> Any:
    # The pure-Python and upb Descriptor classes are one thing at run time.
    return message_cls.DESCRIPTOR


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def base_openapi(app: FastAPI) -> dict[str, Any]:
    """The document of the static routes (what FastAPI generates)."""
    return get_openapi(
        title=app.title,
        version=app.version,
        openapi_version="3.1.0",
        description=app.description,
        routes=app.routes,
    )


# Generic routes whose body depends on the model: each live model documents its own
# operation instead (with its message schema), and the generic one leaves the document.
PER_MODEL_ONLY = ("/models/{name}/tasks", "/models/{name}/batches", "/models/{name}/infer")


def with_models(
    base: dict[str, Any], models: list[LiveModel], root_path: str = "", max_batch: int = 1000
) -> dict[str, Any]:
    """`base` plus, for every live model, its submit, batch and result operations and its
    message schemas."""
    spec = copy.deepcopy(base)
    if root_path:
        spec["servers"] = [{"url": root_path}]
    submit_parameters = _parameters(base, "/models/{name}/tasks", "post")
    batch_parameters = _parameters(base, "/models/{name}/batches", "post")
    result_parameters = _parameters(base, "/models/{name}/result", "get")
    for path in PER_MODEL_ONLY:
        spec["paths"].pop(path, None)
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    tags = spec.setdefault("tags", [])
    for model in sorted(models, key=lambda m: m.view.name):
        name = model.view.name
        request_ref = _add_schemas(components, model.types.request.DESCRIPTOR, name)
        response_ref = _add_schemas(components, model.types.response.DESCRIPTOR, name)
        tag = f"model: {name}"
        tags.append({"name": tag, "description": model.view.description or name})
        spec["paths"][f"/models/{name}/tasks"] = {
            "post": _submit_operation(model, tag, request_ref, submit_parameters)
        }
        spec["paths"][f"/models/{name}/batches"] = {
            "post": _batch_operation(model, tag, request_ref, batch_parameters, max_batch)
        }
        spec["paths"][f"/models/{name}/result"] = {
            "get": _result_operation(model, tag, response_ref, result_parameters)
        }
        spec["paths"][f"/models/{name}/infer"] = {
            "post": _infer_operation(model, tag, request_ref, response_ref)
        }
    return spec


def _add_schemas(components: dict[str, Any], descriptor: Any, model: str) -> dict[str, Any]:
    """Add the message's schemas; a name another model uses with another shape gets a prefix."""
    schemas = message_schemas(descriptor)
    renames = {
        key: key if components.get(key, schema) == schema else f"{model}.{key}"
        for key, schema in schemas.items()
    }
    for key, schema in schemas.items():
        components[renames[key]] = _rename_refs(schema, renames)
    return {"$ref": f"#/components/schemas/{renames[component_name(descriptor)]}"}


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    prefix = "#/components/schemas/"
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value[len(prefix) :] in renames:
                out[key] = prefix + renames[value[len(prefix) :]]
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def _parameters(base: dict[str, Any], path: str, method: str) -> list[dict[str, Any]]:
    """A generic route's parameters but `{name}`: the same for every model, taken from the
    route itself so the per-model operation and the route never disagree."""
    generic = base["paths"][path][method]
    return [p for p in generic.get("parameters", []) if p["in"] != "path"]


_QUEUE_ERRORS = {
    "400": _error("Not valid JSON, or not valid protobuf."),
    "401": _error("Missing or invalid bearer token."),
    "403": _error("The callback URL's host is not on the webhook allow-list."),
    "404": _error("No such live model."),
    "413": _error("Body too large."),
    "415": _error("Neither JSON nor protobuf."),
    "422": _error(
        "JSON that does not match the request message (the detail names the field, and in a "
        "batch the item), or an Idempotency-Key used before with another request."
    ),
    "503": _error("Broker, store or model unavailable; nothing was queued; retry later."),
}


def _queue_operation(
    model: LiveModel,
    tag: str,
    *,
    kind: str,
    summary: str,
    body: str,
    schema: dict[str, Any],
    body_example: Any,
    accepted: str,
    parameters: list[dict[str, Any]],
) -> dict[str, Any]:
    view = model.view
    return {
        "tags": [tag],
        "summary": summary,
        "description": f"{view.description}\n\n{body}",
        "operationId": f"{kind}_{view.name}",
        "security": SECURITY,
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema, "example": body_example},
                PROTOBUF_CONTENT_TYPE: {"schema": _BINARY},
            },
        },
        "responses": {
            "202": {
                "description": "Queued.",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{accepted}"}}
                },
            },
            **_QUEUE_ERRORS,
        },
    }


def _submit_operation(
    model: LiveModel, tag: str, request_ref: dict[str, Any], parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    view = model.view
    return _queue_operation(
        model,
        tag,
        kind="submit",
        summary=f"Submit a task to {view.name}",
        body=(
            f"Body: `{view.request_type}` as JSON (proto3 JSON mapping, bytes as base64) or as "
            f"protobuf bytes with `Content-Type: {PROTOBUF_CONTENT_TYPE}`."
        ),
        schema=request_ref,
        body_example=example(_descriptor(model.types.request)),
        accepted="TaskAccepted",
        parameters=parameters,
    )


def _batch_operation(
    model: LiveModel,
    tag: str,
    request_ref: dict[str, Any],
    parameters: list[dict[str, Any]],
    max_batch: int,
) -> dict[str, Any]:
    view = model.view
    return _queue_operation(
        model,
        tag,
        kind="batch",
        summary=f"Submit many tasks to {view.name}, all or none",
        body=(
            f"Body: a JSON array of `{view.request_type}` messages, or a `platform.Batch` "
            f"protobuf (`repeated bytes requests`) with `Content-Type: {PROTOBUF_CONTENT_TYPE}`. "
            "The task ids come back in order."
        ),
        schema={"type": "array", "items": request_ref, "minItems": 1, "maxItems": max_batch},
        body_example=[example(_descriptor(model.types.request))],
        accepted="BatchAccepted",
        parameters=parameters,
    )


def _infer_operation(
    model: LiveModel, tag: str, request_ref: dict[str, Any], response_ref: dict[str, Any]
) -> dict[str, Any]:
    view = model.view
    return {
        "tags": [tag],
        "summary": f"Call {view.name} and get its answer now",
        "description": (
            f"{view.description}\n\nBody: `{view.request_type}` (JSON or protobuf, as for a "
            f"task). Answer: `{view.response_type}` as JSON, or its protobuf bytes with "
            f"`Accept: {PROTOBUF_CONTENT_TYPE}`. No task is recorded."
            + (
                "\n\nThis model streams: with `Accept: text/event-stream` each response "
                "message it yields comes as an `event: chunk` as soon as it is produced, then "
                "`event: done`; without, the answer is its chunks merged."
                if view.streams
                else ""
            )
        ),
        "operationId": f"infer_{view.name}",
        "security": SECURITY,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": request_ref,
                    "example": example(_descriptor(model.types.request)),
                },
                PROTOBUF_CONTENT_TYPE: {"schema": _BINARY},
            },
        },
        "responses": {
            "200": {
                "description": "The model's answer.",
                "content": {
                    "application/json": {
                        "schema": response_ref,
                        "example": example(_descriptor(model.types.response)),
                    },
                    PROTOBUF_CONTENT_TYPE: {"schema": _BINARY},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            "400": _error("Not valid JSON, or not valid protobuf."),
            "401": _error("Missing or invalid bearer token."),
            "404": _error("No such live model."),
            "413": _error("Body too large."),
            "415": _error("Neither JSON nor protobuf."),
            "422": _error(
                "JSON that does not match the request message, or the model refused the "
                "request (InvalidInput, with its message)."
            ),
            "502": _error("The model failed; the detail is its error text."),
            "503": _error("No live replica, or a dependency is down; retry later."),
            "504": _error("The model did not answer within its timeout."),
        },
    }


def _result_operation(
    model: LiveModel, tag: str, response_ref: dict[str, Any], parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    view = model.view
    document = {
        "allOf": [
            {"$ref": "#/components/schemas/TaskDocument"},
            {
                "type": "object",
                "properties": {"result": {"anyOf": [response_ref, {"type": "null"}]}},
            },
        ]
    }
    return {
        "tags": [tag],
        "summary": f"Get a task result from {view.name}",
        "description": (
            f"Result: `{view.response_type}`. JSON by default; its protobuf bytes with "
            f"`Accept: {PROTOBUF_CONTENT_TYPE}`."
        ),
        "operationId": f"result_{view.name}",
        "security": SECURITY,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "Done (succeeded, failed, cancelled or expired).",
                "content": {
                    "application/json": {
                        "schema": document,
                        "example": {
                            "task_id": "00000000-0000-4000-8000-000000000000",
                            "model": view.name,
                            "status": "succeeded",
                            "result": example(_descriptor(model.types.response)),
                        },
                    },
                    PROTOBUF_CONTENT_TYPE: {"schema": _BINARY},
                },
            },
            "202": {
                "description": "Not done yet.",
                "content": {"application/json": {"schema": document}},
            },
            "401": _error("Missing or invalid bearer token."),
            "422": _error("Invalid query parameters."),
            "403": _error("The task belongs to another user."),
            "404": _error("Unknown or expired task."),
            "503": _error("Store unavailable; retry later."),
        },
    }
