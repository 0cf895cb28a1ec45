"""Typed contracts on the wire: enums for kinds, typed outputs on events, the model id on render jobs — and
messages queued by an older version still decode."""

from __future__ import annotations

import json

import pytest

from cloud.messages import Event, MessageError, RenderJob, decode, encode
from storage import keys
from storage.contracts import EventKind, JobKind

LORA = keys.model_key("42", "m1")
META = keys.model_meta_key("42", "m1")
PICTURE = keys.render_key("42", "j1", 0)


def test_an_old_agents_done_event_gets_its_outputs_sorted_once() -> None:
    # The body an agent of the previous version sent: output_keys only.
    old = json.dumps(
        {
            "v": 1,
            "event_id": "e1",
            "job_id": "j1",
            "order_id": "o1",
            "job_kind": "train",
            "kind": "done",
            "output_keys": [LORA, META, PICTURE],
            "at": "2026-11-01T00:00:00Z",
        }
    )
    event = decode(old, Event)
    assert event.kind is EventKind.DONE and event.job_kind is JobKind.TRAIN
    assert event.model_key == LORA
    assert event.render_keys == [PICTURE]
    assert event.output_keys == [LORA, META, PICTURE]


def test_typed_outputs_are_what_the_agent_says_not_what_the_keys_look_like() -> None:
    event = Event(
        job_id="j1",
        order_id="o1",
        job_kind="train",
        kind="done",
        output_keys=[LORA, META],
        model_key=LORA,
        render_keys=[],
    )
    again = decode(encode(event), Event)
    assert again == event
    assert again.render_keys == [] and again.model_key == LORA
    assert json.loads(encode(event))["kind"] == "done"  # the wire carries the plain literal


def test_an_old_render_job_without_a_model_id_still_decodes() -> None:
    job = RenderJob(
        job_id="j1",
        order_id="o1",
        user_id="42",
        model_id="m1",
        model_keys=[LORA],
        base_model="tiny-sd",
        prompt="a photo of {subject}",
    )
    body = json.loads(encode(job))
    assert body["model_id"] == "m1"
    del body["model_id"]
    assert decode(json.dumps(body), RenderJob).model_id is None


@pytest.mark.parametrize(("field", "value"), [("kind", "exploded"), ("job_kind", "paint")])
def test_an_unknown_kind_is_refused_naming_the_field(field: str, value: str) -> None:
    body = json.loads(encode(Event(job_id="j1", order_id="o1", job_kind="render", kind="started")))
    body[field] = value
    with pytest.raises(MessageError, match=f"malformed Event: {field}"):
        decode(json.dumps(body), Event)


def test_ids_follow_the_one_pattern() -> None:
    with pytest.raises(MessageError, match="malformed RenderJob: model_id"):
        decode(
            json.dumps(
                {
                    "job_id": "j1",
                    "order_id": "o1",
                    "user_id": "42",
                    "model_id": "../m",
                    "base_model": "b",
                    "prompt": "p",
                }
            ),
            RenderJob,
        )
