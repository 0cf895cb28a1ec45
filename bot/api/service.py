"""The API's order logic, blocking (the server runs it in worker threads): placing trainings and renders for a
tenant's subjects, reading an order with its result links, deleting a model, forgetting a subject.

It reuses the Discord door's parts: the photo checks of /train (bot/services/intake.py → gpu_agent.photos),
the same TrainJob/RenderJob recipe and enqueue rule (bot/services/jobs.py), the model deletion and forgetting
paths (bot/services/deletion.py, purge.py → storage.lifecycle.forgetting). API orders are placed in the
tenant's "server" (storage.api_store.tenant_guild) and cost no credits.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import cast

from bot.backends import Backends
from bot.errors import Busy, NotAllowed, NotFound, Refused
from bot.services import deletion, intake, jobs
from bot.services.purge import purge_member
from bot.services.records import Placed
from cloud.messages import encode, new_id
from storage import api_store, keys, lifecycle
from storage.contracts import JobKind
from storage.lifecycle import LimitReached, Limits, NewModel
from storage.standing import ALL_GUILDS

from .schemas import MAX_SEED, RenderRequest


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class TrainingPlaced:
    report: intake.IntakeReport
    placed: Placed | None  # None: the photos were refused (the report says why)
    subject_id: str
    model_id: str | None


def _uid(subject_id: str) -> int:
    """The services type a member's id as a Discord snowflake; they only ever format it (keys, rows), so a
    subject's id (letters and digits, storage.contracts.ID_PATTERN) goes through them as it is."""
    return cast(int, subject_id)


def _limits(b: Backends) -> Limits:
    s = b.settings
    return Limits(
        max_concurrent=s.api_max_concurrent_orders, daily_quota=s.api_daily_order_quota, starting_credits=0
    )


def _create(b: Backends, **kw: object) -> int:
    try:
        return lifecycle.create_order(b.engine, cost=0, limits=_limits(b), **kw)  # type: ignore[arg-type]
    except LimitReached as err:
        if err.banned:
            raise NotAllowed("This tenant may not place orders.") from None
        raise Busy(
            "This subject has reached its limit of open orders or of orders a day; try again later."
        ) from None


def check_photos(b: Backends, uploads: list[Upload]) -> intake.IntakeReport:
    """/train's checks on uploaded files (zips included): too-large files are early rejections, the rest go
    through bot.services.intake.check. Raises Refused for a request that cannot be a training at all."""
    s = b.settings
    if not uploads:
        raise Refused("Send the photos as `photos` parts of a multipart/form-data body.")
    if len(uploads) > s.max_photos:
        raise Refused(f"{len(uploads)} files: at most {s.max_photos} photos per training.")
    downloaded: list[intake.Downloaded] = []
    early: list[tuple[str, str]] = []
    for i, up in enumerate(uploads, 1):
        label = f"photo {i} ({up.filename[:60]})"
        if len(up.data) > s.max_photo_bytes:
            early.append((label, f"the file is larger than {s.max_photo_bytes / 1_048_576:.0f} MB"))
        else:
            downloaded.append(intake.Downloaded(label, up.filename, up.data))
    return intake.check(s, downloaded, early)


def place_training(
    b: Backends, tenant_id: str, *, subject_id: str | None, name: str, class_word: str, uploads: list[Upload]
) -> TrainingPlaced:
    if subject_id is not None and not api_store.owns_subject(b.engine, tenant_id, subject_id):
        raise NotFound("No subject with that id.")
    report = check_photos(b, uploads)
    if not report.accepted:
        return TrainingPlaced(report, None, subject_id or "", None)
    subject_id = subject_id or api_store.new_subject(b.engine, tenant_id)
    deletion.refuse_while_forgetting(b, _uid(subject_id))
    s = b.settings
    order_id, job_id, model_id = new_id(), new_id(), new_id()
    photo_keys = [keys.photo_key(subject_id, order_id, n) for n in range(len(report.crops))]
    token = lifecycle.new_subject_token(b.engine)
    job = jobs.train_job(
        s,
        job_id=job_id,
        order_id=order_id,
        user_id=subject_id,
        model_id=model_id,
        photo_keys=photo_keys,
        token=token,
        class_word=class_word,
    )
    _create(
        b,
        order_id=order_id,
        job_id=job_id,
        user_id=subject_id,
        guild_id=api_store.tenant_guild(tenant_id),
        channel_id=None,
        kind=JobKind.TRAIN,
        params={
            "title": f"Training: {name}",
            "name": name,
            "class_word": class_word,
            "photos": len(photo_keys),
        },
        job=job.model_dump(mode="json"),
        model=NewModel(model_id, name, class_word, token, s.base_model, keys.model_key(subject_id, model_id)),
    )

    def send() -> None:
        for key, data in zip(photo_keys, report.crops, strict=True):
            b.blobs.put(key, data, content_type="image/jpeg")
        b.queues.train.send(encode(job))

    placed = jobs.enqueue(
        b,
        order_id,
        job_id,
        0,
        send,
        undo=lambda: b.blobs.delete_prefix(keys.photos_prefix(subject_id, order_id)),
    )
    return TrainingPlaced(report, placed, subject_id, model_id)


def place_render(b: Backends, tenant_id: str, req: RenderRequest) -> Placed:
    owner = api_store.tenant_model_owner(b.engine, tenant_id, req.model_id)
    found = lifecycle.list_models(b.engine, _uid(owner)) if owner else []
    model = next((m for m in found if m.id == req.model_id), None)
    if owner is None or model is None:
        raise NotFound("No model with that id.")
    if model.status != "ready":
        raise Refused(f"That model is not ready (it is {model.status}).")
    deletion.refuse_while_forgetting(b, _uid(owner))
    order_id, job_id = new_id(), new_id()
    seed = secrets.randbelow(MAX_SEED) if req.seed is None else req.seed
    job = jobs.render_job(
        b.settings,
        model,
        job_id=job_id,
        order_id=order_id,
        user_id=owner,
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        seed=seed,
        count=req.count,
        width=req.width,
        height=req.height,
        guidance=req.guidance,
    )
    params = {**req.model_dump(), "seed": seed, "title": req.prompt[:200], "mode": "txt2img"}
    _create(
        b,
        order_id=order_id,
        job_id=job_id,
        user_id=owner,
        guild_id=api_store.tenant_guild(tenant_id),
        channel_id=None,
        kind=JobKind.RENDER,
        params=params,
        job=job.model_dump(mode="json"),
        model_id=model.id,
    )
    return jobs.enqueue(b, order_id, job_id, 0, lambda: b.queues.render.send(encode(job)))


def delete_model(b: Backends, tenant_id: str, model_id: str) -> bool:
    """The model row, its open orders (cancelled) and its files; False when it is not the tenant's."""
    owner = api_store.tenant_model_owner(b.engine, tenant_id, model_id)
    if owner is None or lifecycle.delete_model(b.engine, _uid(owner), model_id) is None:
        return False
    deletion.model_deleted(b, _uid(owner), model_id)
    b.blobs.delete_prefix(keys.model_prefix(owner, model_id))
    return True


def forget_subject(b: Backends, tenant_id: str, subject_id: str) -> dict[str, int] | None:
    """Everything of the subject, as /forget-me does for a member: agents told first, then files, then rows,
    and the prefix once more later. None when the subject is not the tenant's."""
    if not api_store.owns_subject(b.engine, tenant_id, subject_id):
        return None
    uid = _uid(subject_id)
    deletion.member_forgotten(b, uid)
    receipt = purge_member(b, uid, ALL_GUILDS, by="api forget")
    deletion.resweep_member(b, uid)
    api_store.drop_subject(b.engine, tenant_id, subject_id)
    return receipt


def link_expiry(b: Backends) -> int:
    return int(time.time()) + b.settings.api_link_ttl_s
