"""POST /v1/models: /train's photo checks on an upload, the per-photo report, the training's recipe, and an
Idempotency-Key on a multipart body (real face photos: photogen/assets/demo_photos)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from cloud.recipes import train_params
from storage import keys, lifecycle
from tests.api.rig import DEMO_PHOTOS, Api, queued_jobs, serve


def _form(photos: list[tuple[str, bytes]], **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for filename, data in photos:
        form.add_field("photos", data, filename=filename, content_type="image/jpeg")
    return form


def _demo(n: int) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(DEMO_PHOTOS.glob("*.jpg"))[:n]]


async def test_a_training_is_checked_like_train_reported_per_photo_and_queued_with_its_recipe(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path, min_good_photos=3) as api:
        await _train(api)


async def _train(api: Api) -> None:
    key = api.key("acme")
    photos = [*_demo(3), ("notes.jpg", b"not a picture at all")]
    headers = {"Idempotency-Key": "train-1"}
    form = _form(photos, name="Ada", class_word="woman")
    status, body, _ = await api.call("POST", "/v1/models", key, data=form, headers=headers)
    assert status == 202, body
    assert [line["ok"] for line in body["photos"]] == [True] * 3 + [False]
    assert body["photos"][3]["label"].endswith("(notes.jpg)") and body["photos"][3]["reason"]
    [job] = queued_jobs(api.b, "train")
    s = api.b.settings
    assert (
        job.order_id == body["order_id"]
        and job.model_id == body["model_id"]
        and job.user_id == body["subject_id"]
    )
    assert (
        job.params == train_params(s, s.base_model) and job.class_word == "woman" and len(job.photo_keys) == 3
    )
    assert job.held_out_photo == 2
    assert all(api.b.blobs.exists(k) for k in job.photo_keys)
    assert job.photo_keys[0] == keys.photo_key(body["subject_id"], body["order_id"], 0)
    models = lifecycle.list_models(api.b.engine, body["subject_id"])  # type: ignore[arg-type]
    assert [(m.id, m.name, m.status) for m in models] == [(body["model_id"], "Ada", "training")]

    # The same upload again (a new multipart boundary) is the same order; other photos under the key are a 409.
    again, replay, _ = await api.call(
        "POST", "/v1/models", key, data=_form(photos, name="Ada", class_word="woman"), headers=headers
    )
    assert again == 202 and replay == body and queued_jobs(api.b, "train") == [job]
    other, conflict, _ = await api.call(
        "POST", "/v1/models", key, data=_form(photos[:2], name="Ada", class_word="woman"), headers=headers
    )
    assert other == 409 and conflict["error"]["code"] == "idempotency_conflict"


async def test_too_few_good_photos_are_refused_with_the_report_and_nothing_stored(api: Api) -> None:
    key = api.key("acme")
    status, body, _ = await api.call(
        "POST", "/v1/models", key, data=_form([*_demo(2), ("x.jpg", b"\xff\xd8junk")])
    )
    assert status == 422 and body["error"]["code"] == "photos_refused"
    assert [line["ok"] for line in body["photos"]] == [True, True, False]
    assert "5" in body["error"]["message"]  # the good photos a training needs
    assert queued_jobs(api.b, "train") == [] and list(api.b.blobs.list("users/")) == []
    status, body, _ = await api.call("POST", "/v1/models", key, data=_form(_demo(1), class_word="dog"))
    assert status == 422 and "class_word" in body["error"]["message"]
