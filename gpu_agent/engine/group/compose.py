"""The group picture: several members, each drawn by their own LoRA only, on one loaded base model.

Stages, for each of the request's pictures (picture i from seed + i):

1. **layout**: the preset's OpenPose keypoints (layouts.py) drawn as a pose map at the render's size;
2. **base render**: the pose ControlNet over the base model, no member LoRA, ``{subject}`` filled with generic
   people ("three people"): the scene, the people where the layout puts them. The ControlNet steers the first
   ``pose_until`` of the steps only (the pose is settled there; the later steps draw detail without its cost).
   A variation (``source``: the group picture it varies) starts instead from an img2img of that picture at the
   variation strength, no member LoRA: the same scene and people, redrawn;
3. **regions**: each person's layout box refined by CLIPSeg ("a person") on the base render, disjoint;
4. **member passes**: every member's region of a picture redrawn in ONE denoising batch, row k with *only
   member k's* adapter (peft's per-row adapters, engine/batch.row_adapters: the other rows' LoRAs contribute
   nothing to it) and ``{subject}`` their own identifier, by masked re-denoising (the base model's own UNet
   through diffusers' StableDiffusionInpaintPipeline, which with a 4-channel UNet blends the unmasked latents
   back at every step) on a crop around their region only (their region's bounding box with margin; the
   crops of one picture share one size, taken from the regions alone), pasted back; then, when the request
   asks for face detail, the face pass for their face (face_detail's crop, redrawn with their adapter alone);
   their layer enters the picture through a weight that is 0 outside their region;
5. **harmonisation**: a low-strength img2img of the whole picture with every LoRA bypassed, which evens out the
   seams and the light.

No leakage: a member's pixels before harmonisation depend only on the base render (no LoRA), the regions (from
the base render) and their own pass; ``GroupPicture.before_harmonise`` keeps them for the tests. The base model
is loaded once (the Renderer's); members' LoRAs go through the Renderer's adapter slots, so they are swapped in
and stay resident like any member's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from gpu_agent.engine.batch import row_adapters
from gpu_agent.engine.face_detail import FACE_PROMPT, FaceRegion, find_faces, paste_back, redraw_side
from gpu_agent.engine.group.components import Segmenter, load_controlnet, skip_when_off
from gpu_agent.engine.group.families import check_families
from gpu_agent.engine.group.layouts import Box, head_points, layout_poses, person_boxes, pose_map
from gpu_agent.engine.group.regions import (
    bounding_box,
    composite,
    feathered,
    member_regions,
    same_size_boxes,
    work_box,
)
from gpu_agent.engine.pngmeta import GenerationParams, png_bytes
from gpu_agent.engine.render import SAMPLER
from gpu_agent.engine.render_hooks import placeholder
from gpu_agent.engine.render_prompt import fill_prompt
from gpu_agent.engine.render_types import (
    DEFAULT_STRENGTH,
    BadRenderRequest,
    LoraRef,
    RenderedImage,
    RenderRequest,
)

if TYPE_CHECKING:
    from gpu_agent.engine.render import Renderer
    from storage.settings import Settings

GENERIC_PEOPLE = {2: "two people", 3: "three people", 4: "four people"}
"""``{subject}`` of the base render and the harmonisation: nobody in particular."""

Progress = Callable[[int, int], None]

PeopleHook = Callable[[Image.Image, list[tuple[int, int]]], Image.Image]
"""Called with each base render and each member's redrawn layer (before their face pass) and the layout's head
centres; returns the picture to go on with. A stand-in for what a real model draws (the benchmark pastes real
face photos there, as the tiny test models draw noise in which no face is found); None in production."""


@dataclass(frozen=True)
class GroupConfig:
    """The group pipeline's models and strengths (settings GROUP_*)."""

    controlnet_model: str = "lllyasviel/sd-controlnet-openpose"
    segmenter_model: str = "CIDAS/clipseg-rd64-refined"
    member_strength: float = 0.55
    """Denoising strength of a member's region: enough to make the generic person them, keeping the pose."""
    harmonise_strength: float = 0.2
    """Denoising strength of the final pass over the whole picture (0: none)."""
    pose_scale: float = 1.0
    """How strongly the pose map steers the base render (controlnet_conditioning_scale)."""
    pose_until: float = 0.5
    """The share of the base render's steps the pose ControlNet steers (control_guidance_end): the first ones,
    which lay out the people; the rest run the UNet alone."""
    segment_prompt: str = "a person"
    segment_threshold: float = 0.35
    face_strength: float = 0.3
    """Denoising strength of a member's face pass (``steps`` × it run): their region's pass has already drawn
    the face with their LoRA; this one redraws its detail at more pixels (the single render's is 0.4)."""
    face_side: float = 0.3
    """The face itself is redrawn at least this share of the model's native side across (0.3: 154 px on SD 1.x,
    above the 150 px chips dlib's face recognition reads), its crop at the size that takes, capped at the native
    size: a small face's crop is upsampled only as far as it needs (see face_detail.redraw_side)."""

    def __post_init__(self) -> None:
        for name in ("member_strength", "face_strength", "face_side"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> GroupConfig:
        return cls(
            controlnet_model=settings.group_controlnet_model,
            segmenter_model=settings.group_segmenter_model,
            member_strength=settings.group_member_strength,
            harmonise_strength=settings.group_harmonise_strength,
            face_strength=settings.group_face_strength,
        )


@dataclass(frozen=True)
class GroupMemberLora:
    """One pictured member: their LoRA (fetched) and their identifier (``{subject}`` of their region)."""

    lora: LoraRef
    subject: str


@dataclass(frozen=True)
class GroupRequest:
    """``n`` group pictures of ``prompt`` (a template with ``{subject}``), members left to right."""

    prompt: str
    members: tuple[GroupMemberLora, ...]
    layout: str | None = None
    negative_prompt: str = ""
    seed: int = 0
    n: int = 1
    width: int = 768
    height: int = 512
    steps: int = 30
    guidance: float = 7.0
    face_detail: bool = True
    source: Image.Image | None = field(default=None, repr=False, compare=False)
    """A variation: the group picture it starts from (img2img at ``strength``) instead of a new base render."""
    strength: float | None = None
    """A variation's denoising strength; None: the single render's variation default."""

    def __post_init__(self) -> None:
        if not 2 <= len(self.members) <= 4:
            raise BadRenderRequest(f"a group picture has 2 to 4 people, not {len(self.members)}")
        if len({m.lora.model_id for m in self.members}) != len(self.members):
            raise BadRenderRequest("each person in a group picture needs their own model")
        for member in self.members:
            self.as_render_request(member.subject)  # the single render's checks: prompt, sizes, steps, seed
        if self.strength is not None and (self.source is None or not 0 < self.strength <= 1):
            raise BadRenderRequest("a group picture's strength is for a variation, in (0, 1]")

    @property
    def variation_strength(self) -> float | None:
        """The strength of a variation's first pass; None when this is a new picture."""
        if self.source is None:
            return None
        return self.strength if self.strength is not None else DEFAULT_STRENGTH["variation"]

    def as_render_request(self, subject: str) -> RenderRequest:
        return RenderRequest(
            self.prompt,
            subject=subject,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            n=self.n,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=self.guidance,
        )


@dataclass(frozen=True)
class GroupPicture:
    """One finished group picture and what the tests and the likeness check need to see of it."""

    rendered: RenderedImage
    base: Image.Image = field(repr=False)
    before_harmonise: Image.Image = field(repr=False)
    regions: list[np.ndarray] = field(repr=False)
    """Per member, left to right: the pixels only their pass may change (boolean, height × width)."""
    boxes: list[Box]
    """Per member: where to look for their face (their face pass's box, else their region's bounding box)."""
    faces: list[bool]
    """Per member: whether the face pass found and redrew their face."""


class _Steps:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def callback(self) -> dict[str, Any]:
        if self.progress is None:
            return {}

        def on_step(_pipe: Any, _step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self.done = min(self.done + 1, self.total)
            self.progress(self.done, self.total)  # type: ignore[misc]
            return kwargs

        return {"callback_on_step_end": on_step}


def img2img_steps(steps: int, strength: float) -> int:
    """Steps to ask an img2img pass for so that ``steps`` × ``strength`` (at least one) of them run."""
    return max(steps, math.ceil(1 / strength))


class GroupComposer:
    """Group pictures on a Renderer's loaded base model, with its adapter slots and its checks."""

    def __init__(
        self,
        renderer: Renderer,
        config: GroupConfig | None = None,
        *,
        cache_dir: Any = None,
        controlnet: Any = None,
        segmenter: Segmenter | None = None,
        people: PeopleHook | None = None,
    ) -> None:
        """``controlnet`` and ``segmenter``, when given, are used instead of the models the config names
        (the benchmark's randomly initialised full-size ones); ``people``: see PeopleHook (benchmarks)."""
        from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image

        self.renderer = renderer
        self.config = config or GroupConfig()
        self.people = people
        txt2img, img2img = renderer.pipelines
        self.controlnet = skip_when_off(
            controlnet or load_controlnet(self.config.controlnet_model, txt2img.unet, cache_dir=cache_dir)
        )
        self.segmenter = segmenter or Segmenter.load(
            self.config.segmenter_model, device=renderer.device, cache_dir=cache_dir
        )
        # from_pipe shares every module (and the scheduler) with the Renderer's pipelines: no weight twice, and
        # the adapters loaded into the UNet are there for all of them.
        self._posed = AutoPipelineForText2Image.from_pipe(txt2img, controlnet=self.controlnet)
        self._inpaint = AutoPipelineForInpainting.from_pipe(txt2img)
        self._img2img = img2img
        for pipe in (self._posed, self._inpaint):
            pipe.set_progress_bar_config(disable=True)

    def render(self, request: GroupRequest, *, progress: Progress | None = None) -> list[GroupPicture]:
        """The request's pictures. Raises BadRenderRequest (unknown layout, mixed base families, over the pixel
        cap), PromptRefused or LoraLoadError before any denoising."""
        renderer = self.renderer
        size = (request.width, request.height)
        if request.width * request.height > renderer.max_pixels:
            raise BadRenderRequest(
                f"{request.width}x{request.height} is more than this renderer's "
                f"{renderer.max_pixels:,} pixel limit"
            )
        poses = layout_poses(request.layout, len(request.members))
        check_families([m.lora for m in request.members], self._posed.unet.config.cross_attention_dim)
        generic = fill_prompt(request.prompt, GENERIC_PEOPLE[len(request.members)])
        prompts = [fill_prompt(request.prompt, m.subject) for m in request.members]
        for prompt in (generic, *prompts):
            renderer.check_prompt(prompt)
        config = self.config
        member_steps = int(img2img_steps(request.steps, config.member_strength) * config.member_strength)
        harmonise = config.harmonise_strength
        varied = request.variation_strength
        first = (
            request.steps if varied is None else max(1, int(img2img_steps(request.steps, varied) * varied))
        )
        batches = math.ceil(len(request.members) / renderer.max_resident)  # member passes per picture
        total = first + request.n * batches * max(1, member_steps)
        if harmonise > 0:
            total += max(1, int(img2img_steps(request.steps, harmonise) * harmonise))
        steps = _Steps(total, progress)
        boxes = person_boxes(poses, size)
        heads = head_points(poses, size)
        with renderer.lock:
            renderer.adapters.activate(None)
            if request.source is None:
                bases = self._base(request, generic, pose_map(poses, size), steps)
            else:
                start = request.source.convert("RGB").resize(size, Image.Resampling.LANCZOS)
                bases = self._img2img_pass(request, generic, [start] * request.n, varied or 0.0, steps)
            if self.people is not None:
                bases = [self.people(b, heads) for b in bases]
            regions = [
                member_regions(
                    boxes,
                    size,
                    self.segmenter.heat(b, config.segment_prompt),
                    threshold=config.segment_threshold,
                )
                for b in bases
            ]
            weights = [[feathered(mask, _feather_radius(mask)) for mask in masks] for masks in regions]
            layers: list[list[Image.Image]] = []
            face_boxes: list[list[Box | None]] = []
            for i, base in enumerate(bases):
                layers_i, faces_i = self._member_layers(request, i, prompts, base, regions[i], heads, steps)
                layers.append(layers_i)
                face_boxes.append(faces_i)
            before = [composite(base, layers[i], weights[i]) for i, base in enumerate(bases)]
            renderer.adapters.activate(None)
            final = (
                self._img2img_pass(request, generic, before, harmonise, steps) if harmonise > 0 else before
            )
        pictures = []
        for i, image in enumerate(final):
            found = [f is not None for f in face_boxes[i]]
            where = [
                f if f is not None else (bounding_box(m) or (0, 0, *size))
                for f, m in zip(face_boxes[i], regions[i], strict=True)
            ]
            pictures.append(
                GroupPicture(
                    rendered=self._finish(request, generic, image, request.seed + i, sum(found), varied),
                    base=bases[i],
                    before_harmonise=before[i],
                    regions=regions[i],
                    boxes=where,
                    faces=found,
                )
            )
        return pictures

    # --- stages ---------------------------------------------------------------------------------------------

    def _base(
        self, request: GroupRequest, prompt: str, pose: Image.Image, steps: _Steps
    ) -> list[Image.Image]:
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.n)]
        with torch.inference_mode():
            out = self._posed(
                prompt=prompt,
                negative_prompt=request.negative_prompt or None,
                image=pose,
                num_images_per_prompt=request.n,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generators,
                controlnet_conditioning_scale=self.config.pose_scale,
                control_guidance_end=self.config.pose_until,
                output_type="pil",
                **steps.callback(),
            )
        return list(out.images)

    def _member_layers(
        self,
        request: GroupRequest,
        i: int,
        prompts: list[str],
        base: Image.Image,
        masks: list[np.ndarray],
        heads: list[tuple[int, int]],
        steps: _Steps,
    ) -> tuple[list[Image.Image], list[Box | None]]:
        """Every member's layer of picture ``i``: the base with their region's crop redrawn (all members in one
        denoising batch, each row with only their own LoRA), then their face redrawn with their adapter alone;
        and the box of the face each redrew, if any."""
        boxes = same_size_boxes([work_box(mask, base.size) for mask in masks], base.size)
        redrawn: list[Image.Image] = []
        size = self.renderer.max_resident  # a batch's LoRAs must all be resident at once
        for start in range(0, len(masks), size):
            part = range(start, min(start + size, len(masks)))
            redrawn += self._redraw_regions(request, i, prompts, base, masks, boxes, part, steps)
        layers: list[Image.Image] = []
        faces: list[Box | None] = []
        for k, (box, crop) in enumerate(zip(boxes, redrawn, strict=True)):
            layer = base.copy()
            layer.paste(crop, box[:2])
            if self.people is not None:
                layer = self.people(layer, heads)
            face = self._their_face(layer, masks[k]) if request.face_detail else None
            if face is not None:
                self.renderer.adapters.activate(request.members[k].lora)
                layer = self._redraw_face(request, k, i, layer, face)
            layers.append(layer)
            faces.append(face.box if face is not None else None)
        return layers, faces

    def _redraw_regions(
        self,
        request: GroupRequest,
        i: int,
        prompts: list[str],
        base: Image.Image,
        masks: list[np.ndarray],
        boxes: list[Box],
        members: range,
        steps: _Steps,
    ) -> list[Image.Image]:
        """The crops of ``members`` redrawn by masked re-denoising in one batch: row k with member k's LoRA
        only (peft's per-row adapters, engine/batch.row_adapters), their prompt and their own noise. A row's
        arithmetic does not depend on the other rows' LoRAs or prompts (LoRA layers, attention and group norm
        work row by row), so a member's crop is the same whoever stands beside them."""
        adapters = self.renderer.adapters
        slots = [adapters.resident_slot(request.members[k].lora) for k in members]
        adapters.activate_slots(
            {slot: request.members[k].lora.scale for slot, k in zip(slots, members, strict=True)}
        )
        left, top, right, bottom = boxes[members[0]]
        width, height = right - left, bottom - top
        crop_masks = [
            Image.fromarray(masks[k][y0:y1, x0:x1].astype(np.uint8) * 255, mode="L")
            for k in members
            for x0, y0, x1, y1 in [boxes[k]]
        ]
        strength = self.config.member_strength
        with row_adapters(self._inpaint, slots, slots), torch.inference_mode():
            out = self._inpaint(
                prompt=[prompts[k] for k in members],
                negative_prompt=[request.negative_prompt] * len(members) if request.negative_prompt else None,
                image=[base.crop(boxes[k]) for k in members],
                mask_image=crop_masks,
                width=width,
                height=height,
                strength=strength,
                num_inference_steps=img2img_steps(request.steps, strength),
                guidance_scale=request.guidance,
                generator=[
                    torch.Generator("cpu").manual_seed(_member_seed(request.seed + i, k)) for k in members
                ],
                output_type="pil",
                **self._no_masked_image(width, height, len(members)),
                **steps.callback(),
            )
        return list(out.images)

    def _no_masked_image(self, width: int, height: int, rows: int) -> dict[str, Any]:
        """With a 4-channel UNet the inpainting pipeline never reads the masked picture's latents (it blends the
        unmasked latents back instead), yet it VAE-encodes the masked picture unless given them: skip that."""
        pipe = self._inpaint
        if pipe.unet.config.in_channels != 4:
            return {}
        factor = pipe.vae_scale_factor
        shape = (rows, pipe.vae.config.latent_channels, height // factor, width // factor)
        return {"masked_image_latents": torch.zeros(shape)}  # the pipeline moves it to its device and dtype

    def _their_face(self, layer: Image.Image, mask: np.ndarray) -> FaceRegion | None:
        """The largest face the detector finds in the member's layer whose centre lies in their region."""
        config = self.renderer.face_detail
        for region in find_faces(layer, config):
            face = region.face
            cx, cy = int(face.left + face.width / 2), int(face.top + face.height / 2)
            if 0 <= cy < mask.shape[0] and 0 <= cx < mask.shape[1] and mask[cy, cx]:
                return region
        return None

    def _redraw_face(
        self, request: GroupRequest, k: int, i: int, layer: Image.Image, region: FaceRegion
    ) -> Image.Image:
        """The face pass of one member's face (face_detail's crop, prompt, seed and blend) with their adapter, at
        the group's face strength and at the resolution the face needs (``redraw_side``), not always the
        model's native size."""
        config, strength = self.renderer.face_detail, self.config.face_strength
        native = self._img2img.unet.config.sample_size * self._img2img.vae_scale_factor
        side = redraw_side(region, native, self.config.face_side)
        crop = layer.crop(region.box)
        if side != crop.width:
            crop = crop.resize((side, side), Image.Resampling.LANCZOS)
        subject = request.members[k].subject
        with torch.inference_mode():
            (redone,) = self._img2img(
                prompt=fill_prompt(FACE_PROMPT, subject),
                negative_prompt=request.negative_prompt or None,
                image=crop,
                strength=strength,
                guidance_scale=request.guidance,
                num_inference_steps=img2img_steps(request.steps, strength),
                generator=torch.Generator("cpu").manual_seed(_member_seed(request.seed + i, k)),
                output_type="pil",
            ).images
        return paste_back(layer, region.box, redone, config.feather)

    def _img2img_pass(
        self, request: GroupRequest, prompt: str, pictures: list[Image.Image], strength: float, steps: _Steps
    ) -> list[Image.Image]:
        """Picture i redrawn at ``strength`` from seed + i, no member LoRA: the harmonisation, and the start of
        a variation."""
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(len(pictures))]
        with torch.inference_mode():
            out = self._img2img(
                prompt=[prompt] * len(pictures),
                negative_prompt=[request.negative_prompt] * len(pictures)
                if request.negative_prompt
                else None,
                image=pictures,
                strength=strength,
                num_inference_steps=img2img_steps(request.steps, strength),
                guidance_scale=request.guidance,
                generator=generators,
                output_type="pil",
                **steps.callback(),
            )
        return list(out.images)

    def _finish(
        self,
        request: GroupRequest,
        prompt: str,
        image: Image.Image,
        seed: int,
        faces: int,
        strength: float | None,
    ) -> RenderedImage:
        flagged = self.renderer.image_refusal(image)
        if flagged is not None:
            image = placeholder(image.size)
        params = GenerationParams(
            prompt=prompt,
            negative_prompt=request.negative_prompt,
            seed=seed,
            steps=request.steps,
            guidance=request.guidance,
            sampler=SAMPLER,
            width=image.width,
            height=image.height,
            base_model=self.renderer.base_model,
            mode="group",
            lora=",".join(m.lora.model_id for m in request.members),
            strength=strength,
            flagged=flagged,
            face_detail=faces if request.face_detail else None,
        )
        return RenderedImage(
            image=image, seed=seed, png=png_bytes(image, params), params=params, flagged=flagged
        )


def _member_seed(seed: int, k: int) -> int:
    """Member ``k``'s noise for the picture of ``seed``: their own, whoever else is pictured."""
    return (seed + 7919 * (k + 1)) % 2**63


def _feather_radius(mask: np.ndarray) -> int:
    box = bounding_box(mask)
    if box is None:
        return 0
    return max(1, round(0.03 * min(box[2] - box[0], box[3] - box[1])))
