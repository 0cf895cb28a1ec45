"""Likeness of a group picture: each face scored against its own member's reference, never another's.

The engine says where each member's face is (their face pass's box, else their region's box: RenderOutcome.
member_boxes, left to right as ``job.members``); that crop is described and scored against the reference stored
beside that member's model (``keys.likeness_key(user_id, model_id)``). The Event carries one LikenessScore per
picture, as for single renders: the picture's **weakest** scored face (the one the order's likeness is held to),
with ``tries`` 1 (group pictures are not re-rolled). Members without a reference (no describable face in their
photos, an older model) are not scored; a picture with no scored member has no score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cloud.messages import GroupMember, LikenessScore, RenderJob
from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceScore:
    member: int
    """Index in ``job.members``."""
    likeness: object  # gpu_agent.photos.likeness.Likeness


def member_references(blobs: BlobStore, members: list[GroupMember]) -> list[object | None]:
    """Each member's likeness reference (a likeness.Reference), None where there is none or it is unreadable;
    all None when the face models are not installed here."""
    from gpu_agent.photos.faces import FaceModelsMissing, models
    from gpu_agent.photos.likeness import BadReference, Reference

    try:
        models()
    except FaceModelsMissing:
        log.warning("face models are not installed on this agent; group pictures are not scored")
        return [None] * len(members)
    references: list[object | None] = []
    for member in members:
        try:
            references.append(
                Reference.from_json(blobs.get(keys.likeness_key(member.user_id, member.model_id)))
            )
        except (BlobNotFound, ValueError, BadReference):  # ValueError: a key the store refuses
            references.append(None)
    return references


def score_faces(png: bytes, boxes: list[Box], references: list[object | None]) -> list[FaceScore]:
    """Member k's face (the crop ``boxes[k]`` of the picture) against member k's reference, for each member
    with a reference."""
    from gpu_agent.photos.likeness import describe, open_image

    image = open_image(png)
    scores = []
    for k, (box, reference) in enumerate(zip(boxes, references, strict=True)):
        if reference is None:
            continue
        descriptor = None if image is None else describe(image.crop(box))
        scores.append(FaceScore(k, reference.score(descriptor)))  # type: ignore[attr-defined]
    return scores


def weakest(scores: list[FaceScore]) -> LikenessScore | None:
    """The picture's score: its weakest face (lowest likeness rank)."""
    if not scores:
        return None
    worst = min(scores, key=lambda s: s.likeness.rank()).likeness  # type: ignore[attr-defined]
    return LikenessScore(verdict=worst.verdict, score=worst.score, tries=1)  # type: ignore[attr-defined]


def group_likeness(
    blobs: BlobStore, job: RenderJob, pngs: list[bytes], member_boxes: list[list[Box]]
) -> list[LikenessScore] | None:
    """One score per picture (its weakest face), or None when no member of the group can be scored."""
    references = member_references(blobs, job.members)
    if all(r is None for r in references) or len(member_boxes) != len(pngs):
        return None
    scores = [
        weakest(score_faces(png, boxes, references)) for png, boxes in zip(pngs, member_boxes, strict=True)
    ]
    return [s for s in scores if s is not None] or None
