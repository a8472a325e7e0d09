"""The `/v1` routes: OpenAI's API for models, embeddings, files and batches.

Authenticated with the platform's bearer token (the `openai` package's `api_key`); errors in
OpenAI's shape (`app.openai.errors`), with the platform's status codes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from app.api.deps import (
    CurrentUser,
    ServicesDep,
    callback_query,
    checked_callback,
    take_stream_lease,
)
from app.api.routing import bounded_route
from app.api.schemas import error_responses
from app.openai.batch_input import InvalidBatchInput, parse_batch_input
from app.openai.completions import (
    CHAT,
    COMPLETIONS,
    ChunkEvents,
    chat_completion,
    chat_request,
    complete,
    completion_request,
    text_completion,
)
from app.openai.embeddings import ENDPOINT, embed, embedding_model, embeddings_body, input_texts
from app.openai.errors import OpenAIInvalid
from app.openai.files import PURPOSE_BATCH
from app.openai.schemas import (
    Batch,
    BatchList,
    ChatCompletion,
    ChatCompletionRequest,
    CompletionRequest,
    CreateBatchRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    FileDeleted,
    FileList,
    FileObject,
    ModelList,
    OpenAIError,
    OpenAIModel,
    TextCompletion,
)
from app.openai.served import served_model
from app.sharing.leases import OPEN_STREAMS
from app.streaming.calls import EVENT_STREAM, stream_call

TAG = "OpenAI API"
router = APIRouter(prefix="/v1", tags=[TAG], route_class=bounded_route(setting="max_body_bytes"))
files_router = APIRouter(
    prefix="/v1", tags=[TAG], route_class=bounded_route(setting="openai_max_file_bytes")
)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The routes' error responses, in OpenAI's shape (422: a body or query off its schema)."""
    return error_responses(*sorted({*codes, 422}), shape=OpenAIError)


def _model(view: Any) -> OpenAIModel:
    return OpenAIModel(id=view.name, created=0)


@router.get("/models", response_model=ModelList, responses=errors(401, 503))
async def list_models(user: CurrentUser, services: ServicesDep) -> ModelList:
    """The live models, in OpenAI's shape."""
    return ModelList(data=[_model(m.view) for m in await services.catalog.live()])


@router.get("/models/{model}", response_model=OpenAIModel, responses=errors(401, 404, 503))
async def retrieve_model(model: str, user: CurrentUser, services: ServicesDep) -> OpenAIModel:
    """One live model."""
    return _model((await services.catalog.get(model)).view)


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses=errors(400, 401, 404, 413, 422, 429, 502, 503, 504),
)
async def create_embeddings(
    body: EmbeddingsRequest, user: CurrentUser, services: ServicesDep
) -> Response:
    """Embeddings of one text or a list of texts, by a model that serves them (the same
    replicas, and batching, as its `/infer`)."""
    model = await embedding_model(services.catalog, body.model)
    texts = input_texts(body)
    await services.ensure_enabled(model.view.name)
    rate_headers = await services.take_call(user, model.view.name)
    vectors = await embed(services.caller, model, texts)
    content = embeddings_body(
        model.view.name,
        vectors,
        texts,
        encoding_format=body.encoding_format,
        dimensions=body.dimensions,
    )
    return JSONResponse(content, headers=rate_headers)


_STREAMED = {
    "description": "The answer; with `stream: true`, OpenAI's chunks as server-sent events "
    "(`data: {...}` per chunk as the model produces it, then `data: [DONE]`).",
    "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
}
_COMPLETION_ERRORS = (400, 401, 404, 413, 422, 429, 502, 503, 504)


async def _answer(
    services: Any,
    user: str,
    body: ChatCompletionRequest | CompletionRequest,
    endpoint: str,
) -> Response:
    """Chat or text completion: the whole answer, or its chunks as they come."""
    model = await served_model(services.catalog, body.model, endpoint)
    if isinstance(body, ChatCompletionRequest):
        payload, prompt_tokens = chat_request(model, body)
    else:
        payload, prompt_tokens = completion_request(model, body)
    await services.ensure_enabled(model.view.name)
    rate_headers = await services.take_call(user, model.view.name)
    if body.stream:
        lease = await take_stream_lease(services, user)

        async def give_back() -> None:
            await services.leases.give_back(OPEN_STREAMS, user, lease)

        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = ChunkEvents(model, endpoint, prompt_tokens, include_usage=include_usage)
        streamed = await stream_call(
            services.caller.stream(model.view, payload), events, on_end=give_back
        )
        streamed.headers.update(rate_headers)
        return streamed
    pieces = await complete(services.caller, model, payload)
    made = (chat_completion if endpoint == CHAT else text_completion)(model, pieces, prompt_tokens)
    return JSONResponse(made.model_dump(mode="json"), headers=rate_headers)


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: _STREAMED, **errors(*_COMPLETION_ERRORS)},
)
async def create_chat_completion(
    body: ChatCompletionRequest, user: CurrentUser, services: ServicesDep
) -> Response:
    """A chat model's answer to a conversation, whole or streamed (`stream: true`)."""
    return await _answer(services, user, body, CHAT)


@router.post(
    "/completions",
    response_model=TextCompletion,
    responses={200: _STREAMED, **errors(*_COMPLETION_ERRORS)},
)
async def create_completion(
    body: CompletionRequest, user: CurrentUser, services: ServicesDep
) -> Response:
    """A completions model's continuation of a prompt, whole or streamed (`stream: true`)."""
    return await _answer(services, user, body, COMPLETIONS)


# ---- files ---------------------------------------------------------------------------------


@files_router.post("/files", response_model=FileObject, responses=errors(400, 401, 413, 503))
async def upload_file(
    user: CurrentUser,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="JSONL: one batch request per line.")],
    purpose: Annotated[Literal["batch"], Form(description="`batch`: the input of a batch.")],
) -> FileObject:
    """Upload a batch's input file; yours alone, kept `APP_OPENAI_FILE_TTL_S` seconds."""
    content = await file.read()
    if not content:
        raise OpenAIInvalid("the file is empty", param="file")
    return await services.openai_files.create(
        user, filename=file.filename or "upload.jsonl", purpose=purpose, content=content
    )


@router.get("/files", response_model=FileList, responses=errors(401, 503))
async def list_files(
    user: CurrentUser,
    services: ServicesDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> FileList:
    """Your files, newest first."""
    return FileList(data=await services.openai_files.list(user, limit=limit, purpose=purpose))


@router.get("/files/{file_id}", response_model=FileObject, responses=errors(401, 404, 503))
async def retrieve_file(file_id: str, user: CurrentUser, services: ServicesDep) -> FileObject:
    """One of your files (anyone else's is a 404)."""
    return await services.openai_files.get(user, file_id)


@router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/jsonl": {}}}, **errors(401, 404, 503)},
)
async def file_content(file_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    """The bytes of one of your files (a batch's output: one JSON line per `custom_id`)."""
    content = await services.openai_files.content(user, file_id)
    return Response(content, media_type="application/jsonl")


@router.delete("/files/{file_id}", response_model=FileDeleted, responses=errors(401, 404, 503))
async def delete_file(file_id: str, user: CurrentUser, services: ServicesDep) -> FileDeleted:
    """Delete one of your files."""
    await services.openai_files.delete(user, file_id)
    return FileDeleted(id=file_id)


# ---- batches -------------------------------------------------------------------------------


@router.post("/batches", response_model=Batch, responses=errors(400, 401, 403, 404, 422, 503))
async def create_batch(
    body: CreateBatchRequest,
    user: CurrentUser,
    services: ServicesDep,
    callback_url: Annotated[
        str | None,
        callback_query(
            "POST the batch object here when the batch ends (completed, failed, cancelled "
            "or expired), signed as task webhooks are. The platform's own parameter (the "
            "`openai` package: `extra_query`)."
        ),
    ] = None,
) -> Batch:
    """Run every line of an uploaded file as a task on its model's queue (your quotas and
    fair share apply); `in_progress` at once, or `failed` with an error per bad line."""
    if callback_url is not None:
        checked_callback(services, callback_url)
    meta = await services.openai_files.get(user, body.input_file_id)
    if meta.purpose != PURPOSE_BATCH:
        raise OpenAIInvalid("the input file's purpose must be 'batch'", param="input_file_id")
    content = await services.openai_files.content(user, body.input_file_id)
    settings = services.settings
    common: dict[str, Any] = {
        "input_file_id": body.input_file_id,
        "endpoint": body.endpoint,
        "completion_window": body.completion_window,
        "metadata": body.metadata,
        "callback_url": callback_url,
    }
    try:
        parsed = parse_batch_input(
            content, endpoint=body.endpoint, max_lines=settings.openai_batch_max_lines
        )
    except InvalidBatchInput as invalid:
        return await services.openai_batches.create(
            user, parsed=None, model=None, errors=invalid.errors, **common
        )
    model = await embedding_model(services.catalog, parsed.model)
    return await services.openai_batches.create(user, parsed=parsed, model=model, **common)


@router.get("/batches", response_model=BatchList, responses=errors(401, 503))
async def list_batches(
    user: CurrentUser,
    services: ServicesDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchList:
    """Your batches, newest first; `after` (a batch id) and `limit` page through them."""
    batches, more = await services.openai_batches.list(user, after=after, limit=limit)
    return BatchList(
        data=batches,
        first_id=batches[0].id if batches else None,
        last_id=batches[-1].id if batches else None,
        has_more=more,
    )


@router.get("/batches/{batch_id}", response_model=Batch, responses=errors(401, 404, 503))
async def retrieve_batch(batch_id: str, user: CurrentUser, services: ServicesDep) -> Batch:
    """One of your batches, with live `request_counts`."""
    return await services.openai_batches.get(user, batch_id)


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=Batch,
    responses=errors(400, 401, 404, 503),
)
async def cancel_batch(batch_id: str, user: CurrentUser, services: ServicesDep) -> Batch:
    """Stop dispatching the batch's lines and cancel its queued tasks; it ends `cancelled`,
    its output file holding the lines that ran."""
    return await services.openai_batches.cancel(user, batch_id)


__all__ = ["ENDPOINT", "files_router", "router"]
