"""Group pictures through the agent: a RenderJob in mode "group" renders with each member's own LoRA (tiny
models: the pose ControlNet, CLIPSeg and the inpainting pass really run), is safety-checked and stored like any
render; each face is scored against its own member (real faces, dlib); bad orders fail with a member-safe
message and nothing stored."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from agent_testkit import EventLog, render_job
from PIL import Image

from cloud.messages import GroupMember, encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.agent.group_likeness import FaceScore, score_faces, weakest
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.tiny import save_tiny_lora
from gpu_agent.photos.likeness import SAME_PERSON_MAX_DISTANCE, Reference, build_reference, open_image
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos
from storage import keys
from storage.blobs.base import BlobStore


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def collins() -> list[Image.Image]:
    return [open_image(data) for _, data in demo_photos()]  # type: ignore[misc]


@pytest.fixture(scope="module")
def collins_reference(collins: list[Image.Image]) -> Reference:
    ref = build_reference(collins[:-1], None)
    assert ref is not None
    return ref


def store_member(blobs: BlobStore, tmp_path: Path, user: str, model: str, seed: int) -> GroupMember:
    lora = save_tiny_lora("tiny-sd", tmp_path / user / "lora.safetensors", seed=seed)
    blobs.put(keys.model_key(user, model), lora.read_bytes(), content_type="application/octet-stream")
    return GroupMember(
        user_id=user, model_id=model, model_key=keys.model_key(user, model), subject="sks person"
    )


def test_each_face_is_scored_against_its_own_member(
    collins: list[Image.Image], collins_reference: Reference
) -> None:
    hopper = open_image(OTHER_PERSON_PHOTO.read_bytes())
    assert hopper is not None
    hopper_reference = build_reference([hopper], None)
    assert hopper_reference is not None
    left, right = collins[-1], hopper  # Collins' held-out photo on the left, Hopper on the right
    height = 320
    left = left.resize((round(left.width * height / left.height), height))
    right = right.resize((round(right.width * height / right.height), height))
    picture = Image.new("RGB", (left.width + right.width, height))
    picture.paste(left, (0, 0))
    picture.paste(right, (left.width, 0))
    boxes = [(0, 0, left.width, height), (left.width, 0, picture.width, height)]

    ordered = score_faces(_png(picture), boxes, [collins_reference, hopper_reference])
    assert [s.member for s in ordered] == [0, 1]
    assert all(s.likeness.distance < SAME_PERSON_MAX_DISTANCE for s in ordered)  # type: ignore[attr-defined]
    swapped = score_faces(_png(picture), boxes, [hopper_reference, collins_reference])
    assert all(s.likeness.distance > SAME_PERSON_MAX_DISTANCE for s in swapped)  # type: ignore[attr-defined]
    # A member without a reference is not scored; the picture reports its weakest face.
    only_left = score_faces(_png(picture), boxes, [collins_reference, None])
    assert [s.member for s in only_left] == [0]
    worst = weakest(swapped + ordered)
    assert worst is not None and worst.verdict == "weak" and worst.tries == 1
    assert (
        weakest([]) is None
        and weakest([FaceScore(0, ordered[0].likeness)]).verdict == ordered[0].likeness.verdict
    )  # type: ignore[union-attr,attr-defined]


def test_a_group_job_renders_scores_checks_and_stores_and_bad_orders_fail_cleanly(
    make_settings,
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread,
    tmp_path: Path,
    collins_reference: Reference,
) -> None:
    settings = make_settings(group_controlnet_model="tiny-controlnet", group_segmenter_model="tiny-clipseg")
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    alice = store_member(blobs, tmp_path, "ualice", "malice", 1)
    bob = store_member(blobs, tmp_path, "ubob", "mbob", 2)
    blobs.put(
        keys.likeness_key("ualice", "malice"), collins_reference.to_json(), content_type="application/json"
    )

    good = render_job(
        mode="group", members=[alice, bob], layout="table", user_id="ualice", width=128, height=64, count=2
    )
    unknown = render_job(mode="group", members=[alice, bob], layout="beach", width=128, height=64)
    stolen = bob.model_copy(update={"model_key": keys.model_key("ualice", "malice")})
    not_theirs = render_job(mode="group", members=[alice, stolen], width=128, height=64)
    gone = render_job(
        mode="group",
        members=[
            alice,
            bob.model_copy(update={"model_id": "mgone", "model_key": keys.model_key("ubob", "mgone")}),
        ],
        width=128,
        height=64,
    )
    for job in (good, unknown, not_theirs, gone):
        queues.render.send(encode(job))

    done = events.wait_for(lambda e: e.job_id == good.job_id and e.kind == "done", 240, "done")
    assert done.output_keys == [keys.render_key("ualice", good.job_id, n) for n in range(2)]
    assert [v.key for v in done.safety] == done.output_keys == done.render_keys  # typed: the pictures to post
    stored = blobs.get(done.output_keys[0])
    with Image.open(io.BytesIO(stored)) as img:
        assert img.size == (128, 64)
    params = read_png_params(stored)
    assert params.mode == "group" and params.lora == "malice,mbob"
    assert params.face_detail is None and params.strength is None  # the job asked for no face pass
    # Alice has a reference, Bob none: each picture is scored on Alice's face (the tiny models draw noise,
    # so no face is found there).
    assert done.likeness is not None and [s.verdict for s in done.likeness] == ["no_face", "no_face"]

    failures = {
        job.job_id: events.wait_for(
            lambda e, j=job: e.job_id == j.job_id and e.kind == "failed", 120, "failed"
        ).error
        for job in (unknown, not_theirs, gone)
    }
    assert failures[unknown.job_id].code == "bad_request"  # type: ignore[union-attr]
    assert "'beach' is not available; choose one of row, stage, table" in failures[unknown.job_id].message  # type: ignore[union-attr]
    assert failures[not_theirs.job_id].code == "bad_job"  # type: ignore[union-attr]
    assert failures[gone.job_id].code == "model_missing"  # type: ignore[union-attr]
    for job in (unknown, not_theirs, gone):
        assert not blobs.exists(keys.render_key(job.user_id, job.job_id, 0))
        message = failures[job.job_id].message  # type: ignore[union-attr]
        assert "/" not in message and "ubob" not in message and "malice" not in message

    # V on picture 1: the job carries the chosen picture, which the agent fetches and starts from, with the
    # face pass asked for this time (the tiny models draw no face, so it redraws none).
    variation = render_job(
        mode="group",
        members=[alice, bob],
        layout="table",
        user_id="ualice",
        width=128,
        height=64,
        source_key=done.output_keys[0],
        face_detail=True,
    )
    source_gone = render_job(
        mode="group",
        members=[alice, bob],
        width=128,
        height=64,
        source_key=keys.render_key(unknown.user_id, unknown.job_id, 0),  # that job stored nothing
    )
    for job in (variation, source_gone):
        queues.render.send(encode(job))
    varied = events.wait_for(lambda e: e.job_id == variation.job_id and e.kind == "done", 240, "done")
    varied_params = read_png_params(blobs.get(varied.output_keys[0]))
    assert varied_params.strength == 0.6 and varied_params.face_detail == 0 and varied_params.mode == "group"
    missing = events.wait_for(
        lambda e: e.job_id == source_gone.job_id and e.kind == "failed", 120, "failed"
    ).error
    assert missing is not None and missing.code == "source_missing"
    agent.stop()
