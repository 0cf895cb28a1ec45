"""The API's operations as one table: method, path, scope, body and documented responses of each, with its
handler. The server registers routes from it and the OpenAPI document is built from it (bot/api/openapi.py),
so neither can list an operation the other lacks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from storage import api_store, webhooks
from storage.contracts import ID_PATTERN, is_id

from . import addresses, schemas, service, signing
from .errors import ApiError
from .state import Call

Handler = Callable[[Call], Awaitable[tuple[int, BaseModel] | web.StreamResponse]]
Body = type[BaseModel] | Literal["multipart"] | None

_ID_SCHEMA = {"type": "string", "pattern": f"^{ID_PATTERN}$"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # OpenAPI form; aiohttp's is ``route`` when it differs
    op_id: str
    summary: str
    handler: Handler
    scope: str | None  # None: no key (result links)
    ok: tuple[int, type[BaseModel] | str]  # a model, or a media type (a file)
    body: Body = None
    errors: tuple[int, ...] = (400, 401, 403, 404, 413, 422, 429)
    params: list[dict[str, Any]] = field(default_factory=list)
    idempotent: bool = False  # takes an Idempotency-Key header
    route: str | None = None
    description: str = ""


def _path_id(call: Call, name: str, what: str) -> str:
    value = call.request.match_info.get(name, "")
    if not is_id(value):
        raise ApiError(404, "not_found", f"No {what} with that id.")
    return value


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _ID_SCHEMA}


# --- handlers ------------------------------------------------------------------------------------------------


async def create_model(call: Call) -> tuple[int, BaseModel]:
    form = call.form
    assert form is not None
    name = form.fields.get("name") or "model"
    class_word = form.fields.get("class_word") or "person"
    subject_id = form.fields.get("subject_id") or None
    if not 1 <= len(name) <= 32:
        raise ApiError(422, "invalid_request", "`name` must be 1 to 32 characters.")
    if class_word not in schemas.CLASS_WORDS:
        raise ApiError(
            422, "invalid_request", f"`class_word` must be one of {', '.join(schemas.CLASS_WORDS)}."
        )
    if subject_id is not None and not is_id(subject_id):
        raise ApiError(404, "not_found", "No subject with that id.")
    placed = await call.blocking(
        service.place_training,
        call.b,
        call.tenant_id,
        subject_id=subject_id,
        name=name,
        class_word=class_word,
        uploads=form.files,
    )
    lines = [
        schemas.PhotoLine(label=label, ok=ok, reason=reason) for label, ok, reason in placed.report.lines
    ]
    if placed.placed is None:
        raise ApiError(
            422,
            "photos_refused",
            placed.report.summary,
            extra={"photos": [line.model_dump() for line in lines]},
        )
    assert placed.model_id is not None
    return 202, schemas.ModelCreated(
        order_id=placed.placed.order_id,
        model_id=placed.model_id,
        subject_id=placed.subject_id,
        status="queued",
        summary=placed.report.summary,
        photos=lines,
    )


async def create_render(call: Call) -> tuple[int, BaseModel]:
    req = call.json_body(schemas.RenderRequest)
    placed = await call.blocking(service.place_render, call.b, call.tenant_id, req)
    return 202, schemas.OrderCreated(order_id=placed.order_id, status="queued")


async def get_order(call: Call) -> tuple[int, BaseModel]:
    order_id = _path_id(call, "order_id", "order")
    order = api_store.tenant_order(call.b.engine, call.tenant_id, order_id)
    if order is None:
        raise ApiError(404, "not_found", "No order with that id.")
    expires = service.link_expiry(call.b)
    links = [
        schemas.ResultLink(
            url=signing.result_link(call.state.link_secret, call.state.base_url, key, expires),
            expires_at=expires,
        )
        for key in order.image_keys
    ]
    progress = (
        None
        if order.step is None
        else schemas.Progress(step=order.step, total=order.total, eta_s=order.eta_s)
    )
    error = (
        schemas.ErrorDetail(code=order.error_code, message=order.error_message or "")
        if order.error_code
        else None
    )
    return 200, schemas.OrderOut(
        id=order.id,
        kind=order.kind,
        status=order.status,
        subject_id=order.subject_id,
        model_id=order.model_id,
        progress=progress,
        error=error,
        results=links,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


async def delete_model(call: Call) -> tuple[int, BaseModel]:
    model_id = _path_id(call, "model_id", "model")
    if not await call.blocking(service.delete_model, call.b, call.tenant_id, model_id):
        raise ApiError(404, "not_found", "No model with that id.")
    return 200, schemas.Deleted(id=model_id, deleted=True)


async def forget_subject(call: Call) -> tuple[int, BaseModel]:
    subject_id = _path_id(call, "subject_id", "subject")
    receipt = await call.blocking(service.forget_subject, call.b, call.tenant_id, subject_id)
    if receipt is None:
        raise ApiError(404, "not_found", "No subject with that id.")
    return 200, schemas.Forgotten(subject_id=subject_id, forgotten=receipt)


async def create_webhook(call: Call) -> tuple[int, BaseModel]:
    req = call.json_body(schemas.WebhookCreate)
    if not call.b.settings.webhook_allow_private:
        refusal = await addresses.resolution_refusal(req.url)
        if refusal is not None:
            raise ApiError(422, "webhook_url_refused", f"That URL cannot receive webhooks: {refusal}.")
    try:
        endpoint, secret = await call.blocking(
            webhooks.add_endpoint, call.b.engine, call.tenant_id, req.url, list(req.events)
        )
    except ValueError as err:
        raise ApiError(409, "too_many_webhooks", str(err)) from None
    return 201, schemas.WebhookCreated(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        created_at=endpoint.created_at,
        secret=secret,
    )


async def list_webhooks(call: Call) -> tuple[int, BaseModel]:
    found = webhooks.list_endpoints(call.b.engine, call.tenant_id)
    return 200, schemas.WebhookList(
        webhooks=[
            schemas.Webhook(id=e.id, url=e.url, events=list(e.events), created_at=e.created_at) for e in found
        ]
    )


async def delete_webhook(call: Call) -> tuple[int, BaseModel]:
    webhook_id = _path_id(call, "webhook_id", "webhook")
    if not await call.blocking(webhooks.delete_endpoint, call.b.engine, call.tenant_id, webhook_id):
        raise ApiError(404, "not_found", "No webhook with that id.")
    return 200, schemas.Deleted(id=webhook_id, deleted=True)


async def list_deliveries(call: Call) -> tuple[int, BaseModel]:
    query = call.request.query
    order_id = query.get("order_id")
    if order_id is not None and not is_id(order_id):
        raise ApiError(422, "invalid_request", "`order_id` is not an order id.")
    text = query.get("limit", "50")
    if not text.isdigit() or not 1 <= int(text) <= 200:
        raise ApiError(422, "invalid_request", "`limit` must be a whole number from 1 to 200.")
    found = webhooks.list_deliveries(call.b.engine, call.tenant_id, order_id=order_id, limit=int(text))
    return 200, schemas.DeliveryList(
        deliveries=[
            schemas.DeliveryOut(
                id=d.id,
                endpoint_id=d.endpoint_id,
                order_id=d.order_id,
                event=d.event,
                status=d.status,
                attempts=[schemas.Attempt(**a) for a in d.attempt_log],
                created_at=d.created_at,
                delivered_at=d.delivered_at,
            )
            for d in found
        ]
    )


async def get_file(call: Call) -> web.StreamResponse:
    """A result link: the signature is the credential (no key), so a link can be handed to a browser."""
    key = call.request.match_info.get("key", "")
    query = call.request.query
    if not signing.link_valid(call.state.link_secret, key, query.get("expires"), query.get("sig")):
        raise ApiError(
            403, "invalid_link", "This link is invalid or has expired; fetch the order again for a new one."
        )
    try:
        data = await asyncio.to_thread(call.b.blobs.get, key)
    except Exception:
        raise ApiError(404, "not_found", "That file no longer exists.") from None
    kind = "image/png" if key.endswith(".png") else "image/jpeg"
    return web.Response(body=data, content_type=kind)


_IDEMPOTENCY = (
    "Send the same `Idempotency-Key` again with the same body to get the same order back; the same key with "
    "another body is refused with 409."
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/models",
        "createModel",
        "Train a model of a person from photos",
        create_model,
        "models:write",
        (202, schemas.ModelCreated),
        body="multipart",
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
        idempotent=True,
        description="The same photo checks as Discord's /train; the response reports on every photo. "
        "Without `subject_id` a new subject is made. " + _IDEMPOTENCY,
    ),
    Operation(
        "POST",
        "/v1/renders",
        "createRender",
        "Render pictures with a ready model",
        create_render,
        "renders:write",
        (202, schemas.OrderCreated),
        body=schemas.RenderRequest,
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
        idempotent=True,
        description=_IDEMPOTENCY,
    ),
    Operation(
        "GET",
        "/v1/orders/{order_id}",
        "getOrder",
        "An order's status, progress and result links",
        get_order,
        "orders:read",
        (200, schemas.OrderOut),
        params=[_path("order_id")],
    ),
    Operation(
        "DELETE",
        "/v1/models/{model_id}",
        "deleteModel",
        "Delete a model (its open orders are cancelled)",
        delete_model,
        "models:delete",
        (200, schemas.Deleted),
        params=[_path("model_id")],
    ),
    Operation(
        "DELETE",
        "/v1/subjects/{subject_id}",
        "forgetSubject",
        "Forget a subject: every photo, model, picture and order of theirs",
        forget_subject,
        "subjects:delete",
        (200, schemas.Forgotten),
        params=[_path("subject_id")],
    ),
    Operation(
        "POST",
        "/v1/webhooks",
        "createWebhook",
        "Register a webhook endpoint",
        create_webhook,
        "webhooks:write",
        (201, schemas.WebhookCreated),
        body=schemas.WebhookCreate,
        errors=(400, 401, 403, 404, 409, 413, 422, 429),
        idempotent=True,
    ),
    Operation(
        "GET",
        "/v1/webhooks",
        "listWebhooks",
        "Your webhook endpoints",
        list_webhooks,
        "webhooks:read",
        (200, schemas.WebhookList),
    ),
    Operation(
        "DELETE",
        "/v1/webhooks/{webhook_id}",
        "deleteWebhook",
        "Remove a webhook endpoint",
        delete_webhook,
        "webhooks:write",
        (200, schemas.Deleted),
        params=[_path("webhook_id")],
    ),
    Operation(
        "GET",
        "/v1/webhooks/deliveries",
        "listDeliveries",
        "The delivery log: every webhook delivery and each attempt",
        list_deliveries,
        "webhooks:read",
        (200, schemas.DeliveryList),
        params=[
            {"name": "order_id", "in": "query", "required": False, "schema": _ID_SCHEMA},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            },
        ],
    ),
    Operation(
        "GET",
        "/v1/files/{key}",
        "getFile",
        "A result picture, through the signed link an order gave",
        get_file,
        None,
        (200, "image/png"),
        errors=(403, 404),
        params=[
            {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}},
            {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
        ],
        route="/v1/files/{key:.+}",
        description="No API key: the link's signature (over the file and the expiry) is the credential. A "
        "link past its expiry, or with any byte changed, is refused with 403.",
    ),
)
