"""The likeness fields of the messages: which photo a TrainJob holds out, the scores a done event carries."""

from __future__ import annotations

import pytest

from cloud.messages import Event, LikenessScore, MessageError, TrainJob, decode, encode

_JOB = {
    "job_id": "j1",
    "order_id": "o1",
    "user_id": "u1",
    "model_id": "m1",
    "subject_token": "sks",
    "class_word": "woman",
    "base_model": "tiny-sd",
    "photo_keys": ["users/u1/photos/o1/0.jpg", "users/u1/photos/o1/1.jpg"],
}


def test_held_out_photo_must_be_one_of_the_photos() -> None:
    job = TrainJob(**_JOB, held_out_photo=1)
    assert decode(encode(job), TrainJob).held_out_photo == 1
    assert TrainJob(**_JOB).held_out_photo is None  # old messages: every photo is trained on
    with pytest.raises(MessageError, match="held_out_photo 2 is not one of the 2 photos"):
        decode(encode(TrainJob(**_JOB)).replace('"held_out_photo":null', '"held_out_photo":2'), TrainJob)


def test_done_event_carries_scores() -> None:
    event = Event(
        job_id="j1",
        order_id="o1",
        job_kind="render",
        kind="done",
        output_keys=["a/renders/j1/0.png"],
        likeness=[LikenessScore(verdict="fair", score=0.47, tries=2)],
    )
    back = decode(encode(event), Event)
    assert back.likeness == [LikenessScore(verdict="fair", score=0.47, tries=2)]
    assert (
        decode(encode(Event(job_id="j1", order_id="o1", job_kind="render", kind="done")), Event).likeness
        is None
    )
    with pytest.raises(MessageError, match="likeness"):
        decode(encode(event).replace('"fair"', '"great"'), Event)
