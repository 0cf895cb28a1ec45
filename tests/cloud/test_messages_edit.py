"""RenderJob in mode "edit": it names the picture it changes; image guidance belongs to edits only."""

from __future__ import annotations

import pytest

from cloud.messages import MessageError, RenderJob, decode, encode

BASE = {"job_id": "j1", "order_id": "o1", "user_id": "u1", "base_model": "tiny-sd", "prompt": "make it night"}


def test_an_edit_round_trips_with_its_guidances_and_lora_switch() -> None:
    job = RenderJob(
        **BASE,
        mode="edit",
        source_key="users/u1/renders/j0/0.png",
        guidance=9,
        image_guidance=2.5,
        edit_lora=False,
    )
    again = decode(encode(job), RenderJob)
    assert again == job and again.image_guidance == 2.5 and again.edit_lora is False


def test_an_edit_without_a_picture_or_guidance_out_of_range_is_refused() -> None:
    with pytest.raises(MessageError, match="an edit needs the picture it changes"):
        decode(encode(RenderJob(**BASE)).replace('"txt2img"', '"edit"'), RenderJob)
    with pytest.raises(ValueError, match="image_guidance is for edits"):
        RenderJob(**BASE, image_guidance=1.5)
    with pytest.raises(ValueError, match="less than or equal to 10"):
        RenderJob(**BASE, mode="edit", source_key="users/u1/x.png", image_guidance=11)
