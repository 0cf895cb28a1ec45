"""`photogen api`: keys (hashed, scoped, revocable, rate-limited), renders, orders and their result links,
idempotency, deleting a model, forgetting a subject, and tenant isolation — over a live server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bot.api import signing
from bot.api.auth import KEY_CACHE_S
from bot.api.keys_cli import run_api_keys
from bot.api.openapi import document
from bot.api.routes import OPERATIONS
from storage import api_store, keys, lifecycle, read_session, standing
from storage.blobs.local import link_secret
from storage.models import ApiKey
from tests.api.rig import Api, agent_finishes, queued_jobs, ready_model, serve

RENDER = {"prompt": "a photo of {subject} on a beach", "count": 2, "seed": 7}


async def test_keys_are_stored_hashed_and_a_revoked_key_is_refused(api: Api, capsys) -> None:  # type: ignore[no-untyped-def]
    run_api_keys(api.b.settings, "create", tenant="acme", scopes="orders:read", label="ci", key_id=None)
    printed = capsys.readouterr().out.strip().splitlines()
    token = printed[-1]
    key_id = token.split("_")[1]
    with read_session(api.b.engine) as s:
        row = s.get(ApiKey, key_id)
        assert (
            row is not None and row.token_hash == api_store.hash_token(token) and token not in row.token_hash
        )
    stored = await asyncio.to_thread(Path(api.b.settings.database_path).read_bytes)
    assert token.encode() not in stored  # only its hash is kept
    status, body, _ = await api.call("GET", "/v1/orders/nothing", token)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = await api.call(
        "GET", "/v1/orders/nothing", token[:-1] + ("A" if token[-1] != "A" else "B")
    )
    assert status == 401 and body["error"]["code"] == "invalid_key"
    run_api_keys(api.b.settings, "revoke", tenant=None, scopes=None, label=None, key_id=key_id)
    await asyncio.sleep(KEY_CACHE_S)  # the server trusts a checked key this long
    status, body, _ = await api.call("GET", "/v1/orders/nothing", token)
    assert status == 401 and body["error"]["code"] == "invalid_key"
    run_api_keys(api.b.settings, "list", tenant="acme", scopes=None, label=None, key_id=None)
    assert f"{key_id}  tenant=acme  revoked" in capsys.readouterr().out
    status, body, _ = await api.call("GET", "/v1/orders/nothing", None)
    assert status == 401 and body["error"]["code"] == "unauthenticated"


async def test_a_key_may_only_do_what_its_scopes_allow(api: Api) -> None:
    _, model_id = ready_model(api.b, "acme")
    reader = api.key("acme", ["orders:read"])
    for method, path, kw in (
        ("POST", "/v1/renders", {"json": {**RENDER, "model_id": model_id}}),
        ("DELETE", f"/v1/models/{model_id}", {}),
        ("POST", "/v1/webhooks", {"json": {"url": "http://127.0.0.1:9/hook"}}),
        ("GET", "/v1/webhooks/deliveries", {}),
    ):
        status, body, _ = await api.call(method, path, reader, **kw)
        assert status == 403 and body["error"]["code"] == "missing_scope", (method, path)
    assert queued_jobs(api.b, "render") == []
    renderer = api.key("acme", ["renders:write"])
    status, body, _ = await api.call("POST", "/v1/renders", renderer, json={**RENDER, "model_id": model_id})
    assert status == 202
    status, _, _ = await api.call("GET", f"/v1/orders/{body['order_id']}", renderer)
    assert status == 403


async def test_each_key_has_its_own_rate_limit(tmp_path: Path) -> None:
    async with serve(tmp_path, api_rate_limit_per_minute=3) as api:
        first, second = api.key("acme"), api.key("acme")
        for _ in range(3):
            assert (await api.call("GET", "/v1/webhooks", first))[0] == 200
        status, body, headers = await api.call("GET", "/v1/webhooks", first)
        assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1
        assert (await api.call("GET", "/v1/webhooks", second))[0] == 200


async def test_a_render_is_queued_with_the_models_lora_uncharged_and_its_results_are_signed_links(
    api: Api,
) -> None:
    subject, model_id = ready_model(api.b, "acme")
    key = api.key("acme")
    status, body, _ = await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": model_id})
    assert status == 202 and body["status"] == "queued"
    order_id = body["order_id"]
    [job] = queued_jobs(api.b, "render")
    assert (
        job.order_id == order_id
        and job.user_id == subject
        and job.model_keys == [keys.model_key(subject, model_id)]
    )
    assert job.seed == 7 and job.count == 2 and job.steps == api.b.settings.render_steps
    order = lifecycle.get_order(api.b.engine, order_id)
    assert order is not None and order.credits_charged == 0 and order.guild_id == "api-acme"
    with read_session(api.b.engine) as s:  # no Discord credits were granted or spent
        assert standing.credits_of(s, "api-acme", subject) == 0
    status, body, _ = await api.call("GET", f"/v1/orders/{order_id}", key)
    assert status == 200 and body["status"] == "queued" and body["results"] == []

    agent_finishes(api.b, order_id)
    status, body, _ = await api.call("GET", f"/v1/orders/{order_id}", key)
    assert status == 200 and body["status"] == "delivered" and len(body["results"]) == 2
    link = body["results"][1]["url"]
    assert link.startswith(api.base + "/v1/files/") and "users/" in link
    async with api.http.get(link) as resp:  # no key needed: the signature is the credential
        assert resp.status == 200 and await resp.read() == b"\x89PNG picture 1"
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    status, body, _ = await api.call("GET", tampered.removeprefix(api.base), None)
    assert status == 403 and body["error"]["code"] == "invalid_link"
    render_key = keys.render_key(subject, job.job_id, 0)
    expired = signing.result_link(link_secret(api.b.settings), api.base, render_key, int(time.time()) - 1)
    assert (await api.call("GET", expired.removeprefix(api.base), None))[0] == 403
    other_key = keys.render_key(subject, job.job_id, 1)
    swapped = link.replace("/1.png", "/0.png")  # a valid signature for another file
    assert other_key in link and (await api.call("GET", swapped.removeprefix(api.base), None))[0] == 403


async def test_idempotency_key_same_body_same_order_other_body_409(api: Api) -> None:
    _, model_id = ready_model(api.b, "acme")
    key = api.key("acme")
    body = {**RENDER, "model_id": model_id}
    headers = {"Idempotency-Key": "order-42"}
    s1, b1, h1 = await api.call("POST", "/v1/renders", key, json=body, headers=headers)
    reordered = json.dumps(
        {"seed": 7, "model_id": model_id, "count": 2, "prompt": RENDER["prompt"]}, indent=1
    )
    s2, b2, h2 = await api.call(
        "POST", "/v1/renders", key, data=reordered, headers={**headers, "Content-Type": "application/json"}
    )
    assert (s1, s2) == (202, 202) and b1 == b2
    assert h1["Idempotent-Replayed"] == "false" and h2["Idempotent-Replayed"] == "true"
    assert len(queued_jobs(api.b, "render")) == 1
    s3, b3, _ = await api.call("POST", "/v1/renders", key, json={**body, "seed": 8}, headers=headers)
    assert s3 == 409 and b3["error"]["code"] == "idempotency_conflict"
    # Keys are per tenant: another tenant's same key is its own.
    _, other_model = ready_model(api.b, "globex")
    s4, b4, _ = await api.call(
        "POST", "/v1/renders", api.key("globex"), json={**RENDER, "model_id": other_model}, headers=headers
    )
    assert s4 == 202 and b4["order_id"] != b1["order_id"]
    assert len(queued_jobs(api.b, "render")) == 2


async def test_one_tenant_never_reaches_another_tenants_orders_models_or_subjects(api: Api) -> None:
    subject_a, model_a = ready_model(api.b, "acme")
    key_a, key_b = api.key("acme"), api.key("globex")
    _, placed, _ = await api.call("POST", "/v1/renders", key_a, json={**RENDER, "model_id": model_a})
    order_a = placed["order_id"]
    agent_finishes(api.b, order_a)
    for method, path, kw in (
        ("GET", f"/v1/orders/{order_a}", {}),
        ("POST", "/v1/renders", {"json": {**RENDER, "model_id": model_a}}),
        ("DELETE", f"/v1/models/{model_a}", {}),
        ("DELETE", f"/v1/subjects/{subject_a}", {}),
    ):
        status, body, _ = await api.call(method, path, key_b, **kw)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path)
        assert order_a not in str(body) and subject_a not in str(body)
    assert (await api.call("GET", "/v1/webhooks/deliveries", key_b))[1] == {"deliveries": []}
    status, body, _ = await api.call("GET", f"/v1/orders/{order_a}", key_a)  # all still there for its tenant
    assert status == 200 and body["status"] == "delivered" and len(body["results"]) == 2
    assert [m.status for m in lifecycle.list_models(api.b.engine, subject_a)] == ["ready"]  # type: ignore[arg-type]


async def test_deleting_a_model_and_forgetting_a_subject(api: Api) -> None:
    subject, model_id = ready_model(api.b, "acme")
    key = api.key("acme")
    _, placed, _ = await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": model_id})
    agent_finishes(api.b, placed["order_id"])
    _, second_model = ready_model(api.b, "acme")
    status, body, _ = await api.call("DELETE", f"/v1/models/{second_model}", key)
    assert status == 200 and body == {"id": second_model, "deleted": True}
    assert (await api.call("DELETE", f"/v1/models/{second_model}", key))[0] == 404
    status, body, _ = await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": second_model})
    assert status == 404

    assert list(api.b.blobs.list(keys.user_prefix(subject)))
    status, body, _ = await api.call("DELETE", f"/v1/subjects/{subject}", key)
    assert status == 200 and body["forgotten"]["orders"] == 2 and body["forgotten"]["models"] == 1
    assert list(api.b.blobs.list(keys.user_prefix(subject))) == []  # photos, LoRA and pictures
    assert (await api.call("GET", f"/v1/orders/{placed['order_id']}", key))[0] == 404
    assert (await api.call("DELETE", f"/v1/subjects/{subject}", key))[0] == 404


async def test_errors_are_json_with_a_code_and_no_internals(api: Api) -> None:
    key = api.key("acme")
    cases = [
        ("GET", "/v1/nowhere", {}, 404, "not_found"),
        ("PUT", "/v1/renders", {}, 405, "method_not_allowed"),
        (
            "POST",
            "/v1/renders",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/renders",
            {"json": {"model_id": "x", "prompt": "", "width": 300}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/renders",
            {"json": {"model_id": "x", "prompt": "p", "extra": 1}},
            422,
            "invalid_request",
        ),
        ("POST", "/v1/models", {"json": {}}, 400, "invalid_body"),
        ("GET", "/v1/orders/..%2F..%2Fetc", {}, 404, "not_found"),
        ("GET", "/v1/webhooks/deliveries?limit=0", {}, 422, "invalid_request"),
    ]
    for method, path, kw, status, code in cases:
        got, body, headers = await api.call(method, path, key, **kw)
        assert (got, body["error"]["code"]) == (status, code), (method, path, body)
        assert headers["Content-Type"].startswith("application/json")
        text = str(body)
        assert str(api.b.settings.database_path.parent) not in text and "Traceback" not in text


def test_the_openapi_document_lists_every_route_and_isserved(tmp_path: Path) -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(op.method, op.path) for op in OPERATIONS}
    assert doc["paths"]["/v1/renders"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RenderRequest"
    }
    assert doc["components"]["schemas"]["RenderRequest"]["properties"]["count"]["maximum"] == 4
