"""Message fields of issue 17: a backdrop RenderJob carries its style and its source picture; a training's done
event may say its small photo set was augmented, and an event without the field still decodes."""

from __future__ import annotations

import pytest

from cloud.messages import AugmentedSet, Event, MessageError, RenderJob, decode, encode


def _render(**fields: object) -> RenderJob:
    values: dict[str, object] = {
        "job_id": "j1",
        "order_id": "o1",
        "user_id": "1",
        "base_model": "tiny-sd",
        "prompt": "p",
    }
    values.update(fields)
    return RenderJob(**values)  # type: ignore[arg-type]


def test_a_backdrop_job_needs_its_style_and_its_picture() -> None:
    job = _render(mode="backdrop", backdrop="blur", source_key="users/1/renders/j0/0.png")
    assert decode(encode(job), RenderJob).backdrop == "blur"
    with pytest.raises(ValueError, match="go together"):
        _render(mode="backdrop", source_key="users/1/renders/j0/0.png")
    with pytest.raises(ValueError, match="go together"):
        _render(mode="txt2img", backdrop="white")
    with pytest.raises(ValueError, match="source_key"):
        _render(mode="backdrop", backdrop="white")
    with pytest.raises(ValueError):
        _render(mode="backdrop", backdrop="sepia", source_key="users/1/renders/j0/0.png")


def test_a_done_event_may_carry_the_augmented_set() -> None:
    event = Event(
        job_id="j1", order_id="o1", job_kind="train", kind="done", augmented=AugmentedSet(photos=2, images=14)
    )
    assert decode(encode(event), Event).augmented == AugmentedSet(photos=2, images=14)
    older = encode(event.model_copy(update={"augmented": None})).replace(',"augmented":null', "")
    assert "augmented" not in older and decode(older, Event).augmented is None
    with pytest.raises(MessageError):
        decode(encode(event).replace('"images":14', '"images":0'), Event)
