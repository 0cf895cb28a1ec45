"""PhotoCheckConfig: every threshold of the photo checks, with where each default comes from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cloud.recipes import train_params
from storage.settings import Settings


class PhotoCheckConfig(BaseModel):
    """Typed knobs of ``check_photos`` (the door) and ``check_crops`` (the door on its own crops, and the agent
    before training). Both sides build it with ``from_settings``, so they judge with the same numbers; the
    thresholds below are the project's, each with its source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- limits from Settings --------------------------------------------------------------------
    min_good_photos: int = Field(3, ge=1, description="Good photos needed to accept a set (MIN_GOOD_PHOTOS).")
    augment_below: int = Field(
        0, ge=0, description="Sets with fewer good photos are augmented (FEWSHOT_AUGMENT_BELOW); 0: never."
    )
    max_photo_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest file (MAX_PHOTO_BYTES).")
    max_photo_pixels: int = Field(40_000_000, ge=1, description="Largest width×height (MAX_PHOTO_PIXELS).")
    crop_size: int = Field(512, ge=32, le=2048, description="Side of the face crop: the training resolution.")

    # --- the face detector ----------------------------------------------------------------------
    detect_max_side: int = Field(
        640,
        ge=160,
        le=4096,
        description="Faces are searched on a copy whose long side is at most this (speed: dlib's HOG costs "
        "grow with the pixel count; a face worth training on is large in the frame anyway).",
    )
    detect_upsample: int = Field(
        1,
        ge=0,
        le=2,
        description="dlib upsampling passes: 1 finds faces down to ~40 px of the copy (dlib's detector window "
        "is 80×80; see dlib's face_detector.py example).",
    )
    min_face_score: float = Field(
        0.3,
        description="The main face is the largest detection scoring at least this (dlib's HOG margin); weaker ones "
        "are ignored, so a pattern is never cropped and trained on as the member. Measured on the test faces: "
        "sharp real faces score 0.5-2.0 (a heavily blurred one ~0.1), the mission patch on the astronaut's suit "
        "0.1-0.6 and sometimes a few pixels larger than her face.",
    )
    rival_min_score: float = Field(
        0.8,
        description="A second face must score at least this to make a photo ambiguous. Measured: a second real "
        "face scores 1.3-1.8, patterns on clothes at most 0.6. Missing a real rival costs little (the crop is "
        "still centred on the largest face, and the set-wide identity check catches the wrong person).",
    )
    similar_face_ratio: float = Field(
        0.6,
        gt=0,
        le=1,
        description="A second face at least this fraction of the largest face's width makes the photo "
        "ambiguous ('several faces'); smaller faces are people in the background and are ignored.",
    )
    min_face_px: int = Field(
        80,
        ge=16,
        description="Smallest face width in the photo's own pixels: dlib's HOG and face-recognition models "
        "work on 80×80 and 150×150 face chips; smaller faces carry too little detail to train on.",
    )
    crop_scale: float = Field(
        2.2,
        ge=1.0,
        le=5.0,
        description="Side of the crop as a multiple of the face box: head and shoulders, the framing "
        "DreamBooth face-training guides recommend.",
    )

    # --- quality ---------------------------------------------------------------------------------
    blur_size: int = Field(
        80,
        ge=32,
        le=512,
        description="The face is scaled to this square before the blur measure. Equal to min_face_px, so an "
        "accepted face is only ever scaled down for it (scaling up would itself blur and skew the measure).",
    )
    min_sharpness: float = Field(
        60.0,
        ge=0,
        description="Least variance of the Laplacian of the grey face at blur_size (Pech-Pacheco et al. 2000, "
        "'Diatom autofocusing in brightfield microscopy'; the usual OpenCV blur-detection recipe). Calibrated on "
        "the test faces: sharp faces measure ~200-500, a Gaussian blur of 1.5% of the face's width brings them "
        "under 40, 2% under 20.",
    )
    duplicate_max_distance: int = Field(
        8,
        ge=0,
        le=64,
        description="Photos whose 64-bit perceptual hashes (imagehash.phash) differ in at most this many bits "
        "are the same shot (re-encoded, resized, recoloured). 8-10 bits is the usual near-duplicate cut for "
        "phash (imagehash README, pHash's own docs).",
    )
    same_person_max_distance: float = Field(
        0.6,
        gt=0,
        le=2,
        description="Largest distance between 128-d dlib face embeddings of one person: dlib's documented "
        "threshold (99.38% on LFW, dlib_face_recognition_resnet_model_v1 release notes).",
    )
    jpeg_quality: int = Field(92, ge=50, le=100, description="JPEG quality of the stored face crops.")

    # --- the crop check (``check_crops``): the door runs it on the crops it stores, the agent again ---------
    crop_detect_side: int = Field(
        400,
        ge=160,
        le=2048,
        description="The stored crop is searched for its face on a copy scaled to this width, up or down, so the "
        "face has one size there at every training resolution (64 px in tests to 1024). A crop frames the face "
        "at 1/crop_scale of its side or more, so it is ~180 px or larger: dlib's 80-px window finds it without "
        "upsampling.",
    )
    crop_detect_upsample: int = Field(0, ge=0, le=2, description="dlib upsampling passes on the crop copy.")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> PhotoCheckConfig:
        """The config for this deployment: limits and training resolution from Settings."""
        values: dict[str, object] = {
            "min_good_photos": settings.min_good_photos,
            "augment_below": settings.fewshot_augment_below,
            "max_photo_bytes": settings.max_photo_bytes,
            "max_photo_pixels": settings.max_photo_pixels,
            "crop_size": train_params(
                settings
            ).resolution,  # the recipe's training size: face-centred squares
        }
        values.update(overrides)
        return cls(**values)
