"""check_photos: decode, find the face, measure, crop — then compare the photos with each other.

The door and the agent agree by construction: the identity and sameness of a set are judged on the face crops
exactly as stored (their JPEG bytes, decoded again), by ``check_crops``' own per-crop step, and the set-wide
steps are run to a fixed point. So the crops the door keeps pass ``check_crops`` unchanged, which is what the
agent runs before training.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from gpu_agent.photos.config import PhotoCheckConfig
from gpu_agent.photos.decode import decode_photo
from gpu_agent.photos.errors import PhotoTooLarge, UnreadablePhoto
from gpu_agent.photos.faces import Face, crop_box, detect_faces, detection_copy, embed_face
from gpu_agent.photos.quality import perceptual_hash, sharpness
from gpu_agent.photos.report import PhotoResult, PhotoSetReport, Verdict


@dataclass
class _Candidate:
    """What the set-wide checks need of a photo that passed the per-photo checks."""

    result: PhotoResult
    phash: imagehash.ImageHash | None  # of the whole photo; None for a stored crop
    embedding: np.ndarray


def check_photos(
    photos: Sequence[tuple[str, bytes]], config: PhotoCheckConfig | None = None
) -> PhotoSetReport:
    """Check a member's photos (label, file bytes) for training; good ones come back with their face crops.

    Per photo: readable, one clear face, large enough, sharp. Across the set: no near-duplicates (the later copy
    is dropped) and one person (faces far from the set's medoid face are dropped). Blocking and CPU-bound (~0.2 s a
    photo): call it from a worker thread in async code.
    """
    config = config or PhotoCheckConfig()
    results: list[PhotoResult] = []
    candidates: list[_Candidate] = []
    for index, (name, data) in enumerate(photos, 1):
        result, candidate = _examine(index, name, data, config)
        results.append(result)
        if candidate is not None:
            candidates.append(candidate)
    survivors = _drop_duplicates(candidates, config.duplicate_max_distance)
    _drop_same_crops_and_other_people(survivors, config)
    _forget_rejected_crops(candidates)
    return PhotoSetReport(results, config.min_good_photos, config.augment_below)


def check_crops(crops: Sequence[tuple[str, bytes]], config: PhotoCheckConfig | None = None) -> PhotoSetReport:
    """Check stored face crops (label, JPEG bytes) again: readable, one clear face, no two alike, one person.

    The agent runs this before training. ``check_photos`` ran the very same steps on the crops it kept, so a
    set the door accepted passes here unchanged; what can still fail is what a tampered or mixed-up message
    breaks. Good crops come back with their bytes as ``crop_jpeg``.
    """
    config = config or PhotoCheckConfig()
    results: list[PhotoResult] = []
    candidates: list[_Candidate] = []
    for index, (name, data) in enumerate(crops, 1):
        result = PhotoResult(index, name, Verdict.OK, sha256=hashlib.sha256(data).hexdigest())
        result.crop_jpeg, result.crop_sha256 = data, result.sha256
        embedding = _examine_crop(result, config)
        results.append(result)
        if embedding is not None:
            candidates.append(_Candidate(result, None, embedding))
    _drop_same_crops_and_other_people(candidates, config)
    _forget_rejected_crops(candidates)
    return PhotoSetReport(results, config.min_good_photos, config.augment_below)


def _crop_detection_copy(image: Image.Image, side: int) -> np.ndarray:
    """The crop scaled (up or down) to ``side`` wide: its face is then the same size whatever the resolution."""
    scale = side / max(image.size)
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BILINEAR
        image = image.resize(size, resample, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _forget_rejected_crops(candidates: list[_Candidate]) -> None:
    for candidate in candidates:
        if not candidate.result.ok:
            candidate.result.crop = None
            candidate.result.crop_jpeg = b""
            candidate.result.crop_sha256 = ""


def _examine(
    index: int, name: str, data: bytes, config: PhotoCheckConfig
) -> tuple[PhotoResult, _Candidate | None]:
    result = PhotoResult(index, name, Verdict.OK, sha256=hashlib.sha256(data).hexdigest())
    try:
        decoded = decode_photo(
            data,
            name,
            max_bytes=config.max_photo_bytes,
            max_pixels=config.max_photo_pixels,
            min_side=2 * config.crop_size,
        )
    except PhotoTooLarge as err:
        return _reject(result, Verdict.TOO_LARGE, err.reason), None
    except UnreadablePhoto as err:
        return _reject(result, Verdict.UNREADABLE, f"this is not a picture we can read: {err.reason}"), None

    image = decoded.image
    array, back = detection_copy(image, config.detect_max_side)
    faces, rects = detect_faces(array, back, config.detect_upsample)
    face, _rect, others = _main_face(faces, rects, config)
    if face is None:
        return _reject(
            result,
            Verdict.NO_FACE,
            "we could not find a face. Use a photo where your face is "
            "clearly visible, facing the camera, not covered and not too small",
        ), None
    result.face_box = _box(face)
    if others:
        return _reject(
            result,
            Verdict.SEVERAL_FACES,
            f"there are {others + 1} faces of about the same size; "
            "we cannot tell which one is you. Use photos of you alone",
        ), None
    if face.size * decoded.scale < config.min_face_px:
        return _reject(
            result,
            Verdict.FACE_TOO_SMALL,
            f"your face is only {face.size * decoded.scale:.0f} pixels "
            f"wide (at least "
            f"{config.min_face_px} needed). Use a closer or higher-resolution photo",
        ), None
    result.sharpness = sharpness(image, face, config.blur_size)
    if result.sharpness < config.min_sharpness:
        return _reject(
            result, Verdict.BLURRY, "your face is blurry (out of focus or moving). Use a sharp photo"
        ), None

    crop = image.crop(crop_box(face, image.size, config.crop_scale)).resize(
        (config.crop_size, config.crop_size), Image.Resampling.LANCZOS
    )
    buf = io.BytesIO()
    crop.save(buf, "JPEG", quality=config.jpeg_quality, optimize=True)
    result.crop, result.crop_jpeg = crop, buf.getvalue()
    result.crop_sha256 = hashlib.sha256(result.crop_jpeg).hexdigest()
    embedding = _examine_crop(result, config)  # judged as the agent will judge it: the stored bytes
    if embedding is None:
        result.crop, result.crop_jpeg, result.crop_sha256 = None, b"", ""
        return result, None
    return result, _Candidate(result, perceptual_hash(image), embedding)


def _examine_crop(result: PhotoResult, config: PhotoCheckConfig) -> np.ndarray | None:
    """The per-crop step of ``check_crops`` on ``result.crop_jpeg``: the face's embedding, or None (rejected)."""
    try:
        decoded = decode_photo(
            result.crop_jpeg,
            result.name,
            max_bytes=config.max_photo_bytes,
            max_pixels=config.max_photo_pixels,
            min_side=config.crop_detect_side,
        )
    except PhotoTooLarge as err:
        _reject(result, Verdict.TOO_LARGE, err.reason)
        return None
    except UnreadablePhoto as err:
        _reject(result, Verdict.UNREADABLE, f"this is not a picture we can read: {err.reason}")
        return None
    array = _crop_detection_copy(decoded.image, config.crop_detect_side)
    faces, rects = detect_faces(array, 1.0, config.crop_detect_upsample)
    face, rect, others = _main_face(faces, rects, config)
    if face is None:
        _reject(
            result,
            Verdict.NO_FACE,
            "once cropped to your face for training, the face is not clear "
            "enough to recognise. Use a photo where your face is clearly visible, facing the camera",
        )
        return None
    if others:
        _reject(
            result,
            Verdict.SEVERAL_FACES,
            "once cropped to your face for training, another face of about "
            "the same size is in the picture. Use photos of you alone",
        )
        return None
    return embed_face(array, rect)


def _main_face(faces: list[Face], rects: list[Any], config: PhotoCheckConfig) -> tuple[Face | None, Any, int]:
    """The largest confident face, its dlib rectangle, and how many other clear faces are about as large."""
    main = next((i for i, f in enumerate(faces) if f.score >= config.min_face_score), None)
    if main is None:
        return None, None, 0
    rivals = sum(
        1
        for i, f in enumerate(faces)
        if i != main
        and f.score >= config.rival_min_score
        and f.size >= config.similar_face_ratio * faces[main].size
    )
    return faces[main], rects[main], rivals


def _drop_duplicates(candidates: list[_Candidate], max_distance: int) -> list[_Candidate]:
    kept: list[_Candidate] = []
    for candidate in candidates:
        twin = next(
            (
                k
                for k in kept
                if k.phash is not None
                and candidate.phash is not None
                and candidate.phash - k.phash <= max_distance
            ),
            None,
        )
        if twin is None:
            kept.append(candidate)
        else:
            _reject(
                candidate.result,
                Verdict.DUPLICATE,
                f"it is (nearly) the same picture as {twin.result.name}. "
                "Use photos taken at different moments, angles or places",
            )
    return kept


def _drop_same_crops_and_other_people(candidates: list[_Candidate], config: PhotoCheckConfig) -> None:
    """The set-wide steps both the door and the agent run on the crops: byte-identical crops, then other people,
    repeated until nothing more is dropped (dropping a face moves the set's medoid; the set that is kept must
    pass these steps again unchanged, as the agent will run them on it)."""
    kept: list[_Candidate] = []
    for candidate in candidates:
        twin = next((k for k in kept if k.result.crop_sha256 == candidate.result.crop_sha256), None)
        if twin is None:
            kept.append(candidate)
        else:
            _reject(
                candidate.result,
                Verdict.DUPLICATE,
                f"it is the same picture as {twin.result.name}. "
                "Use photos taken at different moments, angles or places",
            )
    while _drop_other_people(kept, config.same_person_max_distance):
        kept = [c for c in kept if c.result.ok]


def _drop_other_people(candidates: list[_Candidate], max_distance: float) -> bool:
    """Reject the faces far from the set's medoid face; True when any was rejected."""
    if len(candidates) < 2:
        return False
    vectors = np.stack([c.embedding for c in candidates])
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=-1)
    medoid = int(np.argmin(distances.sum(axis=1)))
    dropped = False
    for candidate, distance in zip(candidates, distances[medoid], strict=True):
        candidate.result.identity_distance = float(distance)
        if distance > max_distance:
            dropped = True
            _reject(
                candidate.result,
                Verdict.OTHER_PERSON,
                "this looks like a different person from the one in "
                "most of your photos. Send photos of one person only",
            )
    return dropped


def _reject(result: PhotoResult, verdict: Verdict, reason: str) -> PhotoResult:
    result.verdict, result.reason = verdict, reason
    return result


def _box(face: Face) -> tuple[int, int, int, int]:
    return round(face.left), round(face.top), round(face.left + face.width), round(face.top + face.height)
