"""The agent's part of the likeness checks: the reference stored beside a trained LoRA, and the re-roll of renders
that do not look like the member (or copy a training photo). The scoring itself is gpu_agent.photos.likeness.

Re-rolls are bounded (``LIKENESS_RETRIES``), use seeds derived from the job's (a redelivered job makes the same
pictures), and are part of the same job: the member's order and credits do not change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.messages import LikenessScore, RenderJob, TrainJob
from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore

if TYPE_CHECKING:
    from PIL import Image

    from gpu_agent.photos.likeness import Likeness, Reference

log = logging.getLogger(__name__)

SCORED_MODES = ("txt2img", "variation")
"""Renders of the member from text (or another render); edits and groups are not portraits of one person."""
KEPT_MODES = ("upscale", "edit", "backdrop")
"""Scored but never re-rendered: the member chose this picture; its enlargement, edit or new backdrop is shown
with its own score (an edit of one of their own photos may well read as a copy of it: said, not re-rolled)."""


def split_held_out(job: TrainJob, photos: list[Path]) -> tuple[list[Path], Path | None]:
    """The photos to train on, and the held-out one. ``photos`` are named by their index in ``job.photo_keys``
    (``07.jpg``); a held-out photo the checks dropped, or one that would leave nothing to train on, holds out none."""
    if job.held_out_photo is None:
        return photos, None
    held = next((p for p in photos if p.stem == f"{job.held_out_photo:02d}"), None)
    if held is None or len(photos) < 2:
        return photos, None
    return [p for p in photos if p != held], held


def put_reference(blobs: BlobStore, job: TrainJob, reference: Reference | None) -> Reference | None:
    """Store a reference made by ``describe_reference`` beside the LoRA (nothing for None); returns it."""
    if reference is not None:
        blobs.put(
            keys.likeness_key(job.user_id, job.model_id), reference.to_json(), content_type="application/json"
        )
    return reference


def describe_reference(job: TrainJob, training: list[Path], held_out: Path | None) -> Reference | None:
    """The likeness reference of these photos, or None when no face could be described (or the face models are
    missing on this agent). Stores nothing: the agent makes it while the model trains, and stores it after."""
    from gpu_agent.photos import FaceModelsMissing
    from gpu_agent.photos.likeness import build_reference, open_image

    def load(path: Path) -> Image.Image | None:
        return open_image(path.read_bytes())

    try:
        images = [img for img in (load(p) for p in training) if img is not None]
        reference = build_reference(images, load(held_out) if held_out is not None else None)
    except FaceModelsMissing:
        log.warning(
            "face models are not installed on this agent; model %s gets no likeness reference", job.model_id
        )
        return None
    if reference is None:
        log.info("no face found in the photos of model %s; its renders will not be scored", job.model_id)
        return None
    return reference


@dataclass
class _Pick:
    png: bytes
    likeness: Likeness
    tries: int
    attempt: int = 0  # 0: the job's own picture; n: the n-th re-roll


class Judge:
    """Scores a render job's pictures against its model's reference and re-renders the weak ones."""

    def __init__(self, reference: Reference, retries: int) -> None:
        self.reference = reference
        self.retries = retries

    @classmethod
    def for_render(cls, blobs: BlobStore, job: RenderJob, retries: int) -> Judge | None:
        """A judge for this job, or None when it is not scored (not a portrait mode, not one model of the
        standard layout, no reference stored, no face models here)."""
        if job.mode not in SCORED_MODES + KEPT_MODES or len(job.model_keys) != 1:
            return None
        if job.mode in KEPT_MODES:
            retries = 0
        key = keys.likeness_key_beside(job.model_keys[0])
        if key is None:
            return None
        try:
            data = blobs.get(key)
        except (BlobNotFound, ValueError):
            return None  # a model trained before likeness existed, or without a describable face
        from gpu_agent.photos.faces import FaceModelsMissing, models
        from gpu_agent.photos.likeness import BadReference, Reference

        try:
            models()
            return cls(Reference.from_json(data), retries)
        except BadReference as err:
            log.warning("likeness reference %s ignored: %s", key, err)
        except FaceModelsMissing:
            log.warning("face models are not installed on this agent; renders are not scored")
        return None

    def improve(
        self,
        pngs: list[bytes],
        rerender: Callable[[int, int], bytes],
        seed_of: Callable[[int, int], int] | None = None,
    ) -> tuple[list[bytes], list[LikenessScore]]:
        """Score each picture; while one fails and tries are left, ``rerender(index, attempt)`` makes another
        (attempt 1, 2 …). Returns the best picture of each slot and its score; ``seed_of(index, attempt)``
        names the seed of a re-rolled picture kept, so the member is shown the seed that really made it."""
        from gpu_agent.photos.likeness import score_picture

        picks: list[_Pick] = []
        for index, png in enumerate(pngs):
            best = _Pick(png, score_picture(self.reference, png), 1)
            attempt = 0
            while not best.likeness.passes and attempt < self.retries:
                attempt += 1
                again = rerender(index, attempt)
                scored = score_picture(self.reference, again)
                log.info(
                    "picture %d re-rendered (%s → %s)",
                    index,
                    best.likeness.verdict,
                    scored.verdict,
                )
                if scored.rank() > best.likeness.rank():
                    best = _Pick(again, scored, attempt + 1, attempt)
                else:
                    best.tries = attempt + 1
            picks.append(best)
        scores = [
            LikenessScore(
                verdict=p.likeness.verdict,
                score=p.likeness.score,
                tries=p.tries,
                seed=seed_of(index, p.attempt) if seed_of is not None and p.attempt else None,
            )
            for index, p in enumerate(picks)
        ]
        return [p.png for p in picks], scores


def reroll_seed(job: RenderJob, index: int, attempt: int) -> int:
    """A new seed for picture ``index``'s ``attempt``-th re-roll, never one of the job's own seeds."""
    return job.seed + job.count * attempt + index
