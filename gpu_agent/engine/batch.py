"""Mixed-member batches: several members' renders in ONE denoising batch, each row with its own member's LoRA.

At peak many members each want a few pictures from their own model. Rendering them one after another leaves
a GPU (or a CPU's vector units) half idle on batches of one or two; putting them in one batch needs every row
to see only its own member's LoRA: engine/row_lora adds each row's own low-rank update inside every LoRA layer
of the UNet and the text encoder(s) (two batched matmuls over per-row stacks of the members' weights, built
once per batch; peft's ``adapter_names`` path for layers of other kinds). When every row of a batch has the
same LoRA (or none), it is simply the active adapter, as for a render alone.

The row layout the hooks must match:

- text encoder(s): called once for the prompts and once for the negative prompts, one row per prompt. When
  every member asks for the same number of pictures, each member's prompt is one row (encoded once, repeated
  per picture by the pipeline, as a render alone does); otherwise one row per picture.
- UNet: one row per picture; with classifier-free guidance the pipeline stacks [unconditional rows,
  conditional rows], so the row list is repeated (each half needs the same member's adapter per row).

Per-row LoRA scale: each slot is activated at its member's scale; two members of one batch that use the same
model at different scales go into separate denoising batches. Rows without a LoRA use ``"__base__"``.

Each picture starts from its own CPU generator (seed + i), so it never depends on its batch-mates, and the
result equals the job rendered alone up to float rounding (``tests/gpu_agent/engine/test_render_batch.py``
states and checks the tolerance; a batch of one is the very same arithmetic as a render alone: exact).

Compatibility (``batch_key``) is defined here and only here: same base model, mode txt2img, size, steps,
sampler, guidance, and whether a negative prompt is given (SDXL encodes "no negative prompt" as zeros and ""
as an encoded empty prompt, so the two cannot share one call).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from gpu_agent.engine.models import model_family
from gpu_agent.engine.preview import PreviewPlan, latents_to_image
from gpu_agent.engine.render import SAMPLER, Progress
from gpu_agent.engine.render_prompt import fill_prompt
from gpu_agent.engine.render_types import BadRenderRequest, LoraRef, RenderedImage, RenderRequest
from gpu_agent.engine.row_lora import BASE, row_adapters

if TYPE_CHECKING:
    from gpu_agent.engine.render import Renderer

BatchKey = tuple[str, int, int, int, str, float, bool]
MemberResult = list[RenderedImage] | Exception
"""A member's pictures, or why they failed (BadRenderRequest, PromptRefused, LoraLoadError, Interrupted …)."""


def batch_key(request: RenderRequest, base_model: str) -> BatchKey | None:
    """What two renders must share to be denoised in one batch; None: never batched (variations and upscales
    start from their own pictures, so they render alone)."""
    if request.mode != "txt2img":
        return None
    return (
        base_model,
        request.width,
        request.height,
        request.steps,
        SAMPLER,
        float(request.guidance),
        bool(request.negative_prompt),
    )


@dataclass
class BatchMember:
    """One job's part of a batch: what it asks for, its LoRA (None: the bare base) and its own callbacks."""

    request: RenderRequest
    lora: LoraRef | None = None
    progress: Progress | None = None
    """progress(step, total) after each step; an exception it raises (e.g. the job was cancelled) ends this
    member's part only: its rows are still computed with the batch and then dropped."""
    preview: PreviewPlan | None = None


def render_batch(renderer: Renderer, members: Sequence[BatchMember]) -> list[MemberResult]:
    """Render every member's pictures, compatible members in one denoising batch; one result per member.

    A member's own failure (over the pixel cap, prompt refused, its LoRA file unusable, stopped from its
    progress callback) is its result and never fails the others. An error of the batch itself (e.g. out of
    memory) is the result of every member in that batch.
    """
    if not members:
        return []
    keys = {batch_key(m.request, renderer.base_model) for m in members}
    if len(keys) != 1 or None in keys:
        raise ValueError("a batch takes txt2img requests sharing one batch_key")
    results: dict[int, MemberResult] = {}
    prompts: dict[int, str] = {}
    for index, member in enumerate(members):
        try:
            prompts[index] = _checked_prompt(renderer, member.request)
        except Exception as err:  # BadRenderRequest, PromptRefused: this member's alone
            results[index] = err
    with renderer.lock:
        for chunk in _chunks(
            [i for i in range(len(members)) if i not in results], members, renderer.max_resident
        ):
            results.update(_render_chunk(renderer, members, prompts, chunk))
    return [results[i] for i in range(len(members))]


# --- planning -----------------------------------------------------------------------------------------------


def _checked_prompt(renderer: Renderer, request: RenderRequest) -> str:
    width, height = request.output_size
    if width * height > renderer.max_pixels:
        raise BadRenderRequest(
            f"{width}x{height} is more than this renderer's {renderer.max_pixels:,} pixel limit"
        )
    prompt = fill_prompt(request.prompt, request.subject)
    renderer.check_prompt(prompt)
    return prompt


def _chunks(indices: list[int], members: Sequence[BatchMember], max_loras: int) -> list[list[int]]:
    """Members split into denoising batches: at most ``max_loras`` distinct LoRAs each (all must be resident
    at once) and one scale per LoRA (a slot has one scale). First fit, in arrival order."""
    chunks: list[tuple[list[int], dict[str, float]]] = []
    for i in indices:
        lora = members[i].lora
        home = next((c for c in chunks if _fits(c[1], lora, max_loras)), None)
        if home is None:
            home = ([], {})
            chunks.append(home)
        home[0].append(i)
        if lora is not None:
            home[1][lora.model_id] = lora.scale
    return [chunk for chunk, _ in chunks]


def _fits(scales: dict[str, float], lora: LoraRef | None, max_loras: int) -> bool:
    if lora is None:
        return True
    if lora.model_id in scales:
        return scales[lora.model_id] == lora.scale
    return len(scales) < max_loras


# --- one denoising batch ------------------------------------------------------------------------------------


def _render_chunk(
    renderer: Renderer, members: Sequence[BatchMember], prompts: dict[int, str], chunk: list[int]
) -> dict[int, MemberResult]:
    results: dict[int, MemberResult] = {}
    slots: dict[int, str] = {}
    scales: dict[str, float] = {}
    for i in chunk:
        lora = members[i].lora
        if lora is None:
            slots[i] = BASE
            continue
        try:
            slots[i] = renderer.adapters.resident_slot(lora)  # LoraLoadError: this member only
        except Exception as err:
            results[i] = err
            continue
        scales[slots[i]] = lora.scale
    live = [i for i in chunk if i not in results]
    if not live:
        return results
    if len({slots[i] for i in live}) == 1:
        # One LoRA (or none) for every row: a render alone's arithmetic, no per-row work at all.
        renderer.adapters.activate(members[live[0]].lora)
    else:
        renderer.adapters.activate_slots(scales)
    try:
        pictures, stopped = _denoise_rows(
            renderer, [members[i] for i in live], [prompts[i] for i in live], [slots[i] for i in live]
        )
    except Exception as err:  # the batch itself failed: every member of it
        return {**results, **dict.fromkeys(live, err)}
    for position, i in enumerate(live):
        if stopped[position] is not None:
            results[i] = stopped[position]  # type: ignore[assignment]
            continue
        try:
            results[i] = _finish_member(renderer, members[i], prompts[i], *pictures[position])
        except Exception as err:
            results[i] = err
    return results


def _denoise_rows(
    renderer: Renderer, members: list[BatchMember], prompts: list[str], slots: list[str]
) -> tuple[list[tuple[list[Image.Image], list[bool]]], list[Exception | None]]:
    """One pipeline call for all members; per member its pictures and blanked flags, and the exception that
    stopped it (None: it ran to the end)."""
    pipe, _ = renderer.pipelines
    first = members[0].request
    counts = [m.request.n for m in members]
    same_count = len(set(counts)) == 1
    rows = [slot for slot, n in zip(slots, counts, strict=True) for _ in range(n)]
    text_rows = slots if same_count else rows
    prompt_rows = (
        prompts if same_count else [p for p, n in zip(prompts, counts, strict=True) for _ in range(n)]
    )
    negatives = [m.request.negative_prompt for m in members]
    negative_rows = (
        negatives if same_count else [p for p, n in zip(negatives, counts, strict=True) for _ in range(n)]
    )
    generators = [
        torch.Generator("cpu").manual_seed(m.request.seed + k) for m in members for k in range(m.request.n)
    ]
    starts = [sum(counts[:k]) for k in range(len(members))]
    stopped: list[Exception | None] = [None] * len(members)
    total = first.steps
    family = model_family(pipe)

    def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        done = min(step + 1, total)
        for k, member in enumerate(members):
            if stopped[k] is not None:
                continue
            try:
                if member.preview is not None and done < total and member.preview.due():
                    latents = kwargs["latents"][starts[k] : starts[k] + 1]
                    member.preview.deliver(done, total, latents_to_image(latents, family))
                if member.progress is not None:
                    member.progress(done, total)
            except Exception as err:
                stopped[k] = err
        if all(s is not None for s in stopped):
            raise stopped[0]  # type: ignore[misc]  # nobody is waiting for these rows any more
        return kwargs

    mixed = len(set(slots)) > 1
    with row_adapters(pipe, text_rows, rows) if mixed else nullcontext(), torch.inference_mode():
        out = pipe(
            prompt=prompt_rows,
            negative_prompt=negative_rows if first.negative_prompt else None,
            num_images_per_prompt=counts[0] if same_count else 1,
            guidance_scale=first.guidance,
            generator=generators,
            width=first.width,
            height=first.height,
            num_inference_steps=first.steps,
            output_type="pil",
            callback_on_step_end=on_step,
        )
    images = list(out.images)
    flags = [bool(f) for f in (getattr(out, "nsfw_content_detected", None) or [False] * len(images))]
    per_member = [(images[s : s + n], flags[s : s + n]) for s, n in zip(starts, counts, strict=True)]
    return per_member, stopped


def _finish_member(
    renderer: Renderer, member: BatchMember, prompt: str, images: list[Image.Image], blanked: list[bool]
) -> list[RenderedImage]:
    """Face detail with the member's adapter alone (as a render alone does it), then each picture's image
    check and PNG."""
    request = member.request
    faces: list[int | None] = [None] * len(images)
    if request.face_detail:
        renderer.adapters.activate(member.lora)
        images, faces = renderer._detail_faces(request, images)
    return [
        renderer._finish(request, prompt, member.lora, image, request.seed + k, faces[k], blanked=blanked[k])
        for k, image in enumerate(images)
    ]
