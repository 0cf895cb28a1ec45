"""The HTTP API's records (bot/api, docs/API.md): tenants, API keys, subjects, idempotency records.

A tenant maps onto the order store as a "server": its orders carry ``guild_id = api-{tenant}`` (tenant_guild),
so standing, bans and quotas work as for a Discord server, and its subjects are users of the order store
(their own ``users/{id}/`` prefix, so forgetting one is the same prefix delete as /forget-me). Keys are shown
once: only the SHA-256 of the secret is stored, and a presented key is compared in constant time.

Every function takes the Engine and is one transaction or one read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from storage.contracts import is_id
from storage.db import read_session, transaction
from storage.models import ApiIdempotency, ApiKey, ApiSubject, ApiTenant, now

#: What a key may do. A route names the one scope it needs (bot/api/routes.py).
SCOPES = (
    "models:write",
    "models:delete",
    "renders:write",
    "orders:read",
    "subjects:delete",
    "webhooks:write",
    "webhooks:read",
)
API_GUILD_PREFIX = "api-"  # Discord guild ids are digits: an ``api-`` guild is always a tenant
TOKEN_PREFIX = "pgk"


class ApiStoreError(ValueError):
    """A refused CLI or API request (unknown tenant, bad scope …); the message is safe to show."""


def tenant_guild(tenant_id: str) -> str:
    return f"{API_GUILD_PREFIX}{tenant_id}"


def tenant_of_guild(guild_id: object | None) -> str | None:
    """The tenant whose orders live in this guild, or None for a Discord server."""
    text = "" if guild_id is None else str(guild_id)
    return text.removeprefix(API_GUILD_PREFIX) if text.startswith(API_GUILD_PREFIX) else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeyView:
    id: str
    tenant_id: str
    scopes: tuple[str, ...]
    label: str | None
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class NewKey:
    key: KeyView
    token: str  # shown once


def _key_view(k: ApiKey) -> KeyView:
    return KeyView(k.id, k.tenant_id, tuple(k.scopes), k.label, k.created_at, k.revoked_at)


# --- tenants and keys (the CLI: photogen api-keys) -------------------------------------------------------------


def create_tenant(engine: Engine, name: str, tenant_id: str | None = None) -> str:
    tenant_id = tenant_id or secrets.token_hex(8)
    if not is_id(tenant_id) or len(tenant_id) > 40:
        raise ApiStoreError("a tenant id is 1-40 letters, digits, '-' or '_'")
    with transaction(engine) as s:
        if s.get(ApiTenant, tenant_id) is not None:
            raise ApiStoreError(f"tenant {tenant_id} exists already")
        s.add(ApiTenant(id=tenant_id, name=name[:200]))
    return tenant_id


def tenant_exists(engine: Engine, tenant_id: str) -> bool:
    with read_session(engine) as s:
        return s.get(ApiTenant, tenant_id) is not None


def create_key(engine: Engine, tenant_id: str, scopes: list[str], label: str | None = None) -> NewKey:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiStoreError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    key_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    with transaction(engine) as s:
        if s.get(ApiTenant, tenant_id) is None:
            raise ApiStoreError(f"no tenant {tenant_id}")
        row = ApiKey(
            id=key_id,
            tenant_id=tenant_id,
            token_hash=hash_token(token),
            scopes=sorted(set(scopes)),
            label=label,
        )
        s.add(row)
        s.flush()
        return NewKey(_key_view(row), token)


def revoke_key(engine: Engine, key_id: str) -> bool:
    """True when the key was live and is revoked now."""
    with transaction(engine) as s:
        row = s.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = now()
        s.add(row)
        return True


def list_keys(engine: Engine, tenant_id: str | None = None) -> list[KeyView]:
    with read_session(engine) as s:
        query = select(ApiKey).order_by(col(ApiKey.created_at))
        if tenant_id is not None:
            query = query.where(ApiKey.tenant_id == tenant_id)
        return [_key_view(k) for k in s.exec(query).all()]


def authenticate(engine: Engine, token: str) -> KeyView | None:
    """The live key this token is, or None (unknown, malformed, wrong secret or revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not is_id(parts[1]):
        return None
    with read_session(engine) as s:
        row = s.get(ApiKey, parts[1])
        if row is None:
            hmac.compare_digest(hash_token(token), "0" * 64)  # the same work for an unknown id
            return None
        if not hmac.compare_digest(hash_token(token), row.token_hash) or row.revoked_at is not None:
            return None
        return _key_view(row)


# --- subjects --------------------------------------------------------------------------------------------------


def new_subject(engine: Engine, tenant_id: str) -> str:
    subject_id = f"s{secrets.token_hex(12)}"
    with transaction(engine) as s:
        s.add(ApiSubject(id=subject_id, tenant_id=tenant_id))
    return subject_id


def owns_subject(engine: Engine, tenant_id: str, subject_id: str) -> bool:
    with read_session(engine) as s:
        row = s.get(ApiSubject, subject_id)
        return row is not None and row.tenant_id == tenant_id


def drop_subject(engine: Engine, tenant_id: str, subject_id: str) -> bool:
    with transaction(engine) as s:
        row = s.get(ApiSubject, subject_id)
        if row is None or row.tenant_id != tenant_id:
            return False
        s.delete(row)
        return True


# --- idempotency -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remembered:
    body_hash: str
    status_code: int
    response: dict[str, Any]


def remembered(engine: Engine, tenant_id: str, key: str) -> Remembered | None:
    with read_session(engine) as s:
        row = s.get(ApiIdempotency, (tenant_id, key))
        return None if row is None else Remembered(row.body_hash, row.status_code, dict(row.response))


def remember(
    engine: Engine, tenant_id: str, key: str, body_hash: str, status_code: int, response: dict[str, Any]
) -> Remembered:
    """Keep the response under the key; when another request kept one first, that one is returned."""
    with transaction(engine) as s:
        row = s.get(ApiIdempotency, (tenant_id, key))
        if row is None:
            row = ApiIdempotency(
                tenant_id=tenant_id, key=key, body_hash=body_hash, status_code=status_code, response=response
            )
            s.add(row)
        return Remembered(row.body_hash, row.status_code, dict(row.response))


# --- a tenant's orders and models (every read checks the tenant: another tenant's ids read as unknown) ----------


@dataclass(frozen=True)
class TenantOrder:
    id: str
    kind: str
    status: str
    subject_id: str
    model_id: str | None
    step: int | None
    total: int | None
    eta_s: float | None
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    image_keys: tuple[str, ...]


_ORDER_COLUMNS = (
    "id, kind, status, user_id AS subject_id, model_id, progress_step AS step, progress_total AS total, "
    "progress_eta_s AS eta_s, error_code, error_message, created_at, updated_at"
)
_ORDER_SQL = f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ? AND guild_id = ?"
_IMAGES_SQL = 'SELECT blob_key FROM images WHERE order_id = ? ORDER BY "index"'


def tenant_order(engine: Engine, tenant_id: str, order_id: str) -> TenantOrder | None:
    """The order when it is the tenant's. Plain SQL on a pooled DBAPI connection (autocommit reads, no ORM, no
    statement built per call): this is the status poll, the API's hottest read (bench/api.py)."""
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        row = cur.execute(_ORDER_SQL, (order_id, tenant_guild(tenant_id))).fetchone()
        if row is None:
            return None
        names = [d[0] for d in cur.description or ()]
        images: tuple[str, ...] = ()
        if row[2] == "delivered":  # final: its pictures no longer change
            images = tuple(r[0] for r in cur.execute(_IMAGES_SQL, (order_id,)).fetchall())
        cur.close()
        return TenantOrder(**dict(zip(names, row, strict=True)), image_keys=images)
    finally:
        conn.close()  # back to the pool


def tenant_model_owner(engine: Engine, tenant_id: str, model_id: str) -> str | None:
    """The subject whose model this is, when the subject is the tenant's."""
    from storage.models import TrainedModel

    with read_session(engine) as s:
        model = s.get(TrainedModel, model_id)
        subject = None if model is None else s.get(ApiSubject, model.user_id)
        return None if subject is None or subject.tenant_id != tenant_id else subject.id
