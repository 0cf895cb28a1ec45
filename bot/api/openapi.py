"""The OpenAPI 3.1 document, built from the operation table (bot/api/routes.py) and the pydantic models'
JSON schemas (bot/api/schemas.py): nothing here is a hand-kept copy of a route or a body."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from storage.api_store import SCOPES

from . import schemas
from .routes import OPERATIONS, Operation
from .signing import SIGNATURE_HEADER

_REF = "#/components/schemas/{model}"
_REASONS = {
    400: "The body could not be read (not JSON, not multipart).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key lacks the operation's scope (or the tenant may not order).",
    404: "No such object of this tenant (another tenant's objects read as unknown too).",
    409: "The Idempotency-Key was used with another body (or a limit of objects was reached).",
    413: "The body is too large.",
    422: "The request is invalid; for POST /v1/models also photos refused, with the per-photo report.",
    429: "Too many requests with this key (see Retry-After), or the subject's order limits.",
}


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [schemas.ErrorResponse]
    for op in OPERATIONS:
        for model in (op.ok[1], op.body):
            if isinstance(model, type) and issubclass(model, BaseModel) and model not in found:
                found.append(model)
    return found


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _multipart() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["photos"],
        "properties": {
            "photos": {
                "type": "array",
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                "description": "The photos (JPEG, PNG, HEIC or .zip files of them), one part each.",
            },
            "name": {"type": "string", "minLength": 1, "maxLength": 32, "default": "model"},
            "class_word": {"type": "string", "enum": list(schemas.CLASS_WORDS), "default": "person"},
            "subject_id": {
                "type": "string",
                "pattern": _id_pattern(),
                "description": "Train this subject again.",
            },
        },
    }


def _id_pattern() -> str:
    from storage.contracts import ID_PATTERN

    return f"^{ID_PATTERN}$"


def _operation(op: Operation) -> dict[str, Any]:
    status, ok = op.ok
    if isinstance(ok, str):
        ok_content = {ok: {"schema": {"type": "string", "contentMediaType": ok}}}
    else:
        ok_content = {"application/json": {"schema": _ref(ok)}}
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": ok_content}}
    for code in op.errors:
        responses[str(code)] = {
            "description": _REASONS.get(code, "Refused."),
            "content": {"application/json": {"schema": _ref(schemas.ErrorResponse)}},
        }
    params = list(op.params)
    if op.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"},
            }
        )
    doc: dict[str, Any] = {
        "operationId": op.op_id,
        "summary": op.summary,
        "responses": responses,
        "security": [{"apiKey": [op.scope]}] if op.scope else [],
    }
    if op.description or op.scope:
        doc["description"] = (op.description + (f" Scope: `{op.scope}`." if op.scope else "")).strip()
    if params:
        doc["parameters"] = params
    if op.body == "multipart":
        doc["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": _multipart()}}}
    elif op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    return doc


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "serialization") for m in _models()], ref_template=_REF)
    components = defs.get("$defs", {})
    # Request bodies are read as validation sees them (defaults optional).
    for model in {op.body for op in OPERATIONS if isinstance(op.body, type)}:
        components[model.__name__] = model.model_json_schema(ref_template=_REF, mode="validation")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Photogen API",
            "version": "1",
            "description": "Train models of people from photos and render pictures of them. Keys, scopes, "
            f"idempotency and webhooks (signed with the `{SIGNATURE_HEADER}` header): docs/API.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`photogen api-keys create`); scopes: " + ", ".join(SCOPES),
                }
            },
        },
    }
