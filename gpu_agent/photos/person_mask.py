"""Person masks without a segmentation network: OpenCV's GrabCut seeded by dlib's face box.

Why no network (issue 17, checked 2026-11-30): MediaPipe 0.10.14's wheel does ship ``selfie_segmentation.tflite``,
but installing it would downgrade protobuf 7 → 4.25 (used by onnx/onnxruntime/transformers here), pull jax and
install opencv-contrib-python beside opencv-python-headless (both provide ``cv2``); mediapipe 1.x no longer ships
the model; the background-removal packages on PyPI (rembg, backgroundremover, carvekit, …) download their
weights at run time, which an offline agent cannot. GrabCut (a colour-model graph cut, in opencv-python-headless,
already an agent dependency) needs no weights; a face-centred portrait gives it strong seeds:

- the inner face box is certainly the person, the head (hair included) and the shoulders below it probably are;
- the bands above the head and beside the shoulders, far from the face, are certainly background.

It works on a small copy (``WORK_SIDE``) and the mask is scaled back and feathered. It is good enough to swap a
background for training and for a studio backdrop; it is not a matting model (fine hair is approximate).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from gpu_agent.photos.faces import Face, detect_faces, detection_copy

WORK_SIDE = 128
"""GrabCut runs on a copy this large: ~40 ms a 512 px crop on one core, and a head-and-shoulders mask needs no more."""
ITERATIONS = 2
DETECT_SIDE = 320
FEATHER = 0.012
"""Edge softening, as a fraction of the picture's long side."""


class NoFace(ValueError):
    """No face was found, so the person cannot be located."""


@dataclass(frozen=True)
class PersonMask:
    """``alpha``: float32 H×W in [0, 1] (1 = the person), at the picture's size; ``face``: the face it grew from."""

    alpha: np.ndarray
    face: Face

    def coverage(self, box: tuple[float, float, float, float]) -> float:
        """The share of ``box`` (left, top, right, bottom) that the mask covers (alpha ≥ 0.5)."""
        left, top, right, bottom = (round(v) for v in box)
        patch = self.alpha[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)]
        return float((patch >= 0.5).mean()) if patch.size else 0.0

    @property
    def share(self) -> float:
        """The share of the picture that is the person."""
        return float((self.alpha >= 0.5).mean())


def find_face(image: Image.Image) -> Face | None:
    """The largest face in ``image`` (in its pixels), searched on a small copy, once more upsampled if needed."""
    small, back = detection_copy(image.convert("RGB"), DETECT_SIDE)
    for upsample in (0, 1):
        faces, _ = detect_faces(small, back, upsample)
        if faces:
            return faces[0]
    return None


def person_mask(image: Image.Image, face: Face | None = None) -> PersonMask:
    """The person in a portrait (``image``: RGB). ``face`` (in ``image``'s pixels) skips the detection.

    Raises NoFace when no face is given or found."""
    rgb = image.convert("RGB")
    face = face or find_face(rgb)
    if face is None:
        raise NoFace("no face found in the picture")
    factor = WORK_SIDE / max(rgb.size)
    small_size = (max(8, round(rgb.width * factor)), max(8, round(rgb.height * factor)))
    small = np.asarray(rgb.resize(small_size, Image.Resampling.BILINEAR), dtype=np.uint8)
    seeds = _seeds(small.shape[:2], face, factor)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation: the same mask for the same picture
    # (the rectangle is unused: the seeds are the mask)
    cv2.grabCut(
        cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
        seeds,
        (0, 0, 0, 0),
        bgd,
        fgd,
        ITERATIONS,
        cv2.GC_INIT_WITH_MASK,
    )
    person = np.where((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD), 1.0, 0.0).astype(np.float32)
    person = _largest_blob_with_face(person, face, factor)
    alpha = cv2.resize(person, rgb.size, interpolation=cv2.INTER_LINEAR)
    blur = max(1, round(FEATHER * max(rgb.size))) * 2 + 1
    alpha = cv2.GaussianBlur(alpha, (blur, blur), 0)
    return PersonMask(np.clip(alpha, 0.0, 1.0).astype(np.float32), face)


def _seeds(shape: tuple[int, int], face: Face, factor: float) -> np.ndarray:
    """GrabCut's starting labels on the small copy, from the face box (scaled by ``factor``)."""
    h, w = shape
    cx, cy = (v * factor for v in face.centre)
    fw, fh = face.width * factor, face.height * factor
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    seeds = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    # Head with hair: an ellipse a little wider than the face and reaching well above it.
    head = ((xs - cx) / (0.95 * fw)) ** 2 + ((ys - (cy - 0.2 * fh)) / (1.05 * fh)) ** 2 <= 1.0
    # Neck and shoulders: a trapezoid widening from the chin to the bottom edge.
    below = np.clip((ys - (cy + 0.5 * fh)) / max(h - (cy + 0.5 * fh), 1.0), 0.0, 1.0)
    torso = (ys >= cy + 0.35 * fh) & (np.abs(xs - cx) <= fw * (0.45 + 1.35 * below))
    seeds[head | torso] = cv2.GC_PR_FGD
    # Certain person: the inner face (dlib's box is the face from brows to chin) and the throat below it.
    core = (np.abs(xs - cx) <= 0.42 * fw) & (ys >= cy - 0.35 * fh) & (ys <= cy + 0.4 * fh)
    throat = (np.abs(xs - cx) <= 0.2 * fw) & (ys > cy + 0.35 * fh) & (ys <= cy + 0.8 * fh)
    seeds[core | throat] = cv2.GC_FGD
    # Certain background: what lies well outside the head and above the shoulders (in the door's crops, whose
    # face fills ~45 % of the side, that is the top corners), never below the chin, where shoulders may be
    # wider than any guess.
    far = ((xs - cx) / (1.2 * fw)) ** 2 + ((ys - (cy - 0.2 * fh)) / (1.3 * fh)) ** 2 > 1.0
    seeds[far & (ys < cy + 0.45 * fh) & ~(head | torso)] = cv2.GC_BGD
    return seeds


def _largest_blob_with_face(person: np.ndarray, face: Face, factor: float) -> np.ndarray:
    """Keep the connected region that holds the face: stray islands of 'person' colour in the background go."""
    count, labels = cv2.connectedComponents(person.astype(np.uint8), connectivity=8)
    if count <= 2:
        return person
    cx, cy = (
        min(max(round(v * factor), 0), n - 1) for v, n in zip(face.centre, person.shape[::-1], strict=True)
    )
    keep = labels[cy, cx]
    return (labels == keep).astype(np.float32) if keep else person


def composite(image: Image.Image, mask: PersonMask, background: Image.Image) -> Image.Image:
    """``image``'s person over ``background`` (resized to fit), blended by the mask's soft edge."""
    fg = np.asarray(image.convert("RGB"), dtype=np.float32)
    bg = np.asarray(background.convert("RGB").resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)
    a = mask.alpha[..., None]
    return Image.fromarray(np.clip(fg * a + bg * (1.0 - a), 0, 255).astype(np.uint8))
