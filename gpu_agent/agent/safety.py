"""Safe to post: every picture an agent stores is checked by a real offline classifier before it is posted.

The classifier is NudeNet's 320n detector: a YOLOv8n network trained on nudity classes, shipped as an ONNX
file inside the ``nudenet`` wheel (nothing is downloaded) and run by onnxruntime on the CPU (0.3 s a picture
on a busy 2-core test machine, docs/SAFETY.md). It was picked because it is the one maintained NSFW model
whose weights come inside a pip package, so
an offline agent has it; diffusers' CLIP-based safety checker needs a hub download and only answers yes/no,
and Falconsai-style ViT classifiers need one too. Licence note: the wheel's metadata says MIT but its LICENSE
file is the AGPL-3.0 text (see docs/SAFETY.md); ``SAFETY_MODEL_PATH`` takes any detector of the same format.

It runs here, in the agent, where the pictures are made: the verdict is computed once, next to the GPU, and
travels in the done event (``Event.safety``, one per stored picture, replayed from the done marker on a
redelivery). The bot never posts a picture without a verdict and applies each server's policy (block, or allow
only in age-restricted channels): bot/services/safety.py. Like the rest of the agent it is torch-free.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from typing import Any

from cloud.messages import ImageSafety
from gpu_agent.agent.runner import JobError
from storage.settings import Settings

log = logging.getLogger(__name__)

CHECKER = "nudenet-320n"
UNAVAILABLE = (
    "The picture safety check is not available on the GPU machine, so no picture can be delivered; "
    "the operators have been told."
)

_detectors: dict[str, Any] = {}
_detectors_lock = threading.Lock()


def _detector(model_path: str) -> Any:
    """One NudeDetector per model file per process (an onnxruntime session is thread-safe to run)."""
    with _detectors_lock:
        if model_path not in _detectors:
            from nudenet import NudeDetector

            _detectors[model_path] = NudeDetector(model_path=model_path or None)
        return _detectors[model_path]


@dataclass(frozen=True)
class SafetyGate:
    """Checks stored pictures: ``verdict(key, png)`` for each one, before the done event names it."""

    model_path: str = ""
    threshold: float = 0.5
    blocked_labels: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> SafetyGate:
        return cls(
            model_path=settings.safety_model_path,
            threshold=settings.safety_threshold,
            blocked_labels=frozenset(settings.safety_blocked_labels),
        )

    def detections(self, png: bytes) -> list[dict[str, Any]]:
        """The detector's raw detections ({class, score, box}) on an encoded picture."""
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(png)) as img:
            rgb = img.convert("RGB")
        # What cv2.imread gives NudeNet for a file: BGR, uint8, height x width x 3.
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        try:
            detector = _detector(self.model_path)
        except Exception as err:
            log.error("the picture safety classifier cannot be loaded: %s", err)
            raise JobError("safety_unavailable", UNAVAILABLE, permanent=False) from None
        return list(detector.detect(bgr))

    def verdict(self, key: str, png: bytes, *, withheld: str | None = None) -> ImageSafety:
        """The verdict on the picture stored at ``key``. ``withheld``: the engine already blanked it (the base
        model's own safety checker, see gpu_agent/engine/render.py): it is flagged and can never be shown."""
        if withheld is not None:
            return ImageSafety(
                key=key, flagged=True, score=1.0, labels=[], withheld=True, checker="base-model"
            )
        hits = [d for d in self.detections(png) if d["class"] in self.blocked_labels]
        score = max((float(d["score"]) for d in hits), default=0.0)
        labels = sorted({d["class"] for d in hits if float(d["score"]) >= self.threshold})
        return ImageSafety(
            key=key,
            flagged=score >= self.threshold,
            score=round(min(score, 1.0), 4),
            labels=labels,
            checker=CHECKER,
        )
