"""Schemathesis against the live API on 127.0.0.1: for every operation of /v1/openapi.json, generated
requests (a bounded number each) with a key of every scope never get a 5xx, and every response conforms to
the document (status code, content type, headers, body schema). Without a key, only the documented 401."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bot.api.routes import OPERATIONS
from bot.api.server import start_api
from bot.backends import open_backends
from storage import api_store
from tests.api.rig import agent_finishes, api_settings, ready_model

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 12


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, key): the API served from its own thread and event loop, as `photogen api` serves it."""
    b = open_backends(api_settings(tmp_path, api_rate_limit_per_minute=100_000, min_good_photos=1))
    api_store.create_tenant(b.engine, "acme", "acme")
    key = api_store.create_key(b.engine, "acme", list(api_store.SCOPES)).token
    _, model_id = ready_model(b, "acme")  # so renders can succeed too
    from bot.api.schemas import RenderRequest
    from bot.api.service import place_render

    agent_finishes(b, place_render(b, "acme", RenderRequest(model_id=model_id, prompt="p")).order_id)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner, base = loop.run_until_complete(start_api(b, "127.0.0.1", 0))
        box["runner"], box["base"] = runner, base
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield str(box["base"]), key
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        b.close()


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_document(
    live_api: tuple[str, str],
) -> None:
    base, key = live_api
    schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(OPERATIONS)
    session = requests.Session()
    seen: set[int] = set()

    for operation in operations:
        _fuzz(operation, base, key, session, seen)
    assert {200, 404, 422} <= seen  # it got past the keys and the validation, and was refused by both


def _fuzz(
    operation: schemathesis.APIOperation, base: str, key: str, session: requests.Session, seen: set[int]
) -> None:
    """EXAMPLES generated requests of one operation, each sent with the key and without one."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        auth = {"Authorization": f"Bearer {key}"}
        response = case.call_and_validate(base_url=base, session=session, headers=auth, checks=CHECKS)
        seen.add(response.status_code)
        if operation.path != "/v1/files/{key}":
            anonymous = case.call(base_url=base, session=session, headers={"Authorization": ""})
            assert anonymous.status_code == 401

    run()
