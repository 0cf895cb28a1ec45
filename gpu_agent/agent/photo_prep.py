"""A training's photos, made ready beside the work that does not need them.

The agent trusts no message: before training it checks the stored crops again (``check_crops``), holds one
photo out for the likeness reference, augments a small set (fewshot.py) and describes the faces for the
reference. None of that is needed before the trainer encodes the photos, which it does after loading the base
model and rendering the class images; so it runs in a thread of its own from the moment the photos are
downloaded, and the trainer waits for it only where it needs the pictures (engine/training/pending.py).

How it is counted (photogen_agent_phase_seconds, kind "train"): ``photos`` is what still sits on the job's
critical path — the download, plus the trainer's wait for the pictures (its clock's ``photos`` lap); the
reference, made while the model trains, is waited for inside ``upload``. ``photos_background`` is the thread's
whole time, for the record: it overlaps other phases and is not part of their sum.

A refused set fails the job with the check's own message (JobError "photos_rejected") at the trainer's next
phase boundary or class-image step, before anything is stored: class images, checkpoints and the model are
uploaded only by a training that went on.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.messages import AugmentedSet, TrainJob
from gpu_agent.agent.likeness import describe_reference, split_held_out
from gpu_agent.agent.runner import JobError
from gpu_agent.agent.stack import wait_for_preload
from storage.settings import Settings

if TYPE_CHECKING:
    from gpu_agent.photos.likeness import Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedPhotos:
    training: list[Path]  # the checked photos trained on (the held-out one taken out)
    held_out: Path | None
    pictures: list[Path]  # what the trainer gets: ``training``, augmented when the set is small
    augmented: AugmentedSet | None
    reference: Reference | None  # the likeness reference, not stored yet


class PhotoPreparation:
    """Runs the checks, augmentation and reference of one training's downloaded photos in a thread."""

    def __init__(self, settings: Settings, job: TrainJob, downloaded: list[Path], workdir: Path) -> None:
        self.settings, self.job, self.downloaded, self.workdir = settings, job, downloaded, workdir
        self.pictures: Future[list[Path]] = Future()
        """Resolved as soon as the trainer can have them (before the reference is made)."""
        self.prepared: Future[PreparedPhotos] = Future()
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=f"photos-{job.job_id}", daemon=True)

    def start(self) -> PhotoPreparation:
        self._thread.start()
        return self

    def result(self) -> PreparedPhotos:
        """Everything prepared (waits for the thread); raises its error."""
        return self.prepared.result()

    def refusal(self) -> JobError | None:
        """The checks' JobError once the thread has ended (None when they passed or failed otherwise)."""
        self.join()
        error = self.pictures.exception()
        return error if isinstance(error, JobError) else None

    def join(self) -> None:
        """Wait for the thread to end (a job never leaves it writing into a work folder being cleaned)."""
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        try:
            # Importing the engine from two threads at once broke jobs (stack.py); the face models it loads
            # alongside are this thread's first need anyway.
            wait_for_preload()
            checked = recheck_crops(self.settings, self.downloaded)
            training, held_out = split_held_out(self.job, checked)
            from gpu_agent.agent.fewshot import training_set

            pictures, augmented = training_set(self.settings, self.job, training, self.workdir / "augmented")
            self.pictures.set_result(pictures)
            reference = describe_reference(self.job, training, held_out)
            self.prepared.set_result(PreparedPhotos(training, held_out, pictures, augmented, reference))
        except BaseException as err:  # handed to whoever waits: the trainer or the job's upload
            for future in (self.pictures, self.prepared):
                if not future.done():
                    future.set_exception(err)
        finally:
            self.seconds = time.monotonic() - began
            log.info("job %s: photos prepared beside the training in %.2f s", self.job.job_id, self.seconds)


def recheck_crops(settings: Settings, paths: list[Path]) -> list[Path]:
    """The agent trusts no message: the stored crops are checked again with ``check_crops``, the step the
    door already ran on exactly these crops with the same config, so it refuses only what the door would
    have refused (a tampered or mixed-up message). Returns the photos that pass (all of them when
    AGENT_CHECK_PHOTOS is off)."""
    if not settings.agent_check_photos:
        return paths
    from gpu_agent.photos import FaceModelsMissing, PhotoCheckConfig, check_crops

    config = PhotoCheckConfig.from_settings(settings)
    try:
        report = check_crops([(f"photo {n + 1}", p.read_bytes()) for n, p in enumerate(paths)], config)
    except FaceModelsMissing:
        log.warning("face models are not installed on this agent; training without re-checking the photos")
        return paths
    if not report.accepted:
        # The crops are stored in the order of the ✅ lines of the member's /train report.
        lead = "Your photos were checked again before training (numbered as the ✅ photos of your report):\n"
        raise JobError("photos_rejected", lead + report.text(max_chars=500 - len(lead)))
    return [paths[result.index - 1] for result in report.good]
