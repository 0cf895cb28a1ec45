"""The agent's part of few-shot training: a small set of photos is augmented before training (photos/augment.py).

The set is made in the job's work folder from the downloaded crops, deterministically (seeded by the job's
training seed), so a redelivered job resumes from its checkpoint with the very pictures it was trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cloud.messages import AugmentedSet as AugmentedFacts
from cloud.messages import TrainJob
from storage.settings import Settings

log = logging.getLogger(__name__)


def training_set(
    settings: Settings, job: TrainJob, photos: list[Path], folder: Path
) -> tuple[list[Path], AugmentedFacts | None]:
    """The pictures to train on: ``photos`` as they are, or, for a set smaller than FEWSHOT_AUGMENT_BELOW (counted
    as the member sent it, held-out photo included, as the photo report counted it), the photos and the new
    pictures made from them (with what was done, for the member's report)."""
    if not photos or len(job.photo_keys) >= settings.fewshot_augment_below:  # the set the member sent
        return photos, None
    from gpu_agent.photos import FaceModelsMissing
    from gpu_agent.photos.augment import augment_files

    try:
        made = augment_files(
            photos, folder, variants=settings.fewshot_variants_per_photo, seed=job.params.seed
        )
    except FaceModelsMissing:
        log.warning(
            "face models are not installed on this agent; training on the %d photos alone", len(photos)
        )
        return photos, None
    log.info(
        "job %s: %d photos augmented to %d training pictures (%d without a face kept as they were)",
        job.job_id,
        made.photos,
        made.images,
        made.without_face,
    )
    if not made.made:
        return photos, None
    return made.paths, AugmentedFacts(photos=made.photos, images=made.images)
