"""Each member's region of a group picture: their layout box, refined by CLIPSeg, never shared with another.

The regions of one picture are disjoint (a pixel claimed by two people goes to the one whose box centre is
nearer), and each member's blend weight (``feathered``) is 0 everywhere outside their own region. So a
member's pixels in the picture before harmonisation are a function of the base render and their own pass
only: nothing another member's LoRA draws can reach them. Torch-free (numpy, PIL).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from gpu_agent.engine.group.layouts import Box


def box_mask(box: Box, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), dtype=bool)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = True
    return mask


def member_regions(
    boxes: list[Box],
    size: tuple[int, int],
    heat: np.ndarray | None = None,
    *,
    threshold: float = 0.35,
    min_share: float = 0.25,
    grow: int = 2,
) -> list[np.ndarray]:
    """Boolean masks (height × width), one per box, left to right, disjoint.

    With ``heat`` (the segmenter's person probability per pixel) a region is its box's pixels at or over
    ``threshold``, grown by ``grow`` pixels (the person's outline, hair, clothes' edges); where that keeps less
    than ``min_share`` of the box the segmenter missed the person and the whole box is the region.
    """
    masks = []
    for box in boxes:
        inside = box_mask(box, size)
        if heat is not None:
            refined = inside & (heat >= threshold)
            if refined.sum() >= min_share * inside.sum():
                inside = _grow(refined, grow) & inside
        masks.append(inside)
    return _disjoint(masks, boxes)


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels < 1:
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    return np.asarray(image.filter(ImageFilter.MaxFilter(2 * pixels + 1))) > 0


def _disjoint(masks: list[np.ndarray], boxes: list[Box]) -> list[np.ndarray]:
    stacked = np.stack(masks)
    contested = stacked.sum(axis=0) > 1
    if not contested.any():
        return masks
    xs = np.arange(stacked.shape[2], dtype=np.float64)
    centres = [(b[0] + b[2]) / 2 for b in boxes]
    distance = np.stack([np.broadcast_to(np.abs(xs - c), stacked.shape[1:]) for c in centres])
    distance = np.where(stacked, distance, np.inf)
    owner = distance.argmin(axis=0)
    return [m & (~contested | (owner == k)) for k, m in enumerate(masks)]


def feathered(mask: np.ndarray, radius: int) -> np.ndarray:
    """A float32 blend weight in [0, 1]: 0 outside ``mask`` and on its border, rising to 1 about
    2 × ``radius`` pixels inside it (eroded, then blurred, then cut to the mask)."""
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    if radius >= 1:
        image = image.filter(ImageFilter.MinFilter(2 * radius + 1)).filter(ImageFilter.GaussianBlur(radius))
    return (np.asarray(image, dtype=np.float32) / 255.0) * mask


def bounding_box(mask: np.ndarray) -> Box | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def work_box(mask: np.ndarray, size: tuple[int, int], *, pad: float = 0.125, min_side: int = 64) -> Box:
    """The crop a member's pass redraws: their region's bounding box with ``pad`` of its size around it
    (context), sides rounded up to multiples of 8 and at least ``min_side``, inside the picture."""
    width, height = size
    box = bounding_box(mask) or (0, 0, width, height)
    left, top, right, bottom = box
    px, py = round(pad * (right - left)), round(pad * (bottom - top))
    left, top, right, bottom = left - px, top - py, right + px, bottom + py
    x0, x1 = _fit(left, right, width, min_side)
    y0, y1 = _fit(top, bottom, height, min_side)
    return x0, y0, x1, y1


def same_size_boxes(boxes: list[Box], size: tuple[int, int]) -> list[Box]:
    """The crops widened to one common size (the largest width and height among them), each around its own
    centre and inside the picture: the members' passes can then share one denoising batch. The common size
    comes from the regions alone (the base render and the segmenter, no LoRA), so no member's crop depends on
    another member's model."""
    width, height = size
    side_x = max(right - left for left, _, right, _ in boxes)
    side_y = max(bottom - top for _, top, _, bottom in boxes)
    out = []
    for left, top, right, bottom in boxes:
        x0, x1 = _fit(left, right, width, side_x)
        y0, y1 = _fit(top, bottom, height, side_y)
        out.append((x0, y0, x1, y1))
    return out


def _fit(low: int, high: int, limit: int, min_side: int) -> tuple[int, int]:
    """[low, high) widened to a multiple of 8 (at least ``min_side``, at most ``limit`` rounded down to 8)
    and moved inside [0, limit)."""
    side = min(max(high - low, min_side), limit)
    side = min(-(-side // 8) * 8, limit // 8 * 8)
    centre = (low + high) / 2
    start = round(centre - side / 2)
    start = max(0, min(start, limit - side))
    return start, start + side


def composite(base: Image.Image, layers: list[Image.Image], weights: list[np.ndarray]) -> Image.Image:
    """``base`` with each layer blended in by its weight. The weights have disjoint supports, so inside a
    member's region only their own layer (and the base) count, to the exact pixel."""
    out = np.asarray(base.convert("RGB"), dtype=np.float32)
    for layer, weight in zip(layers, weights, strict=True):
        alpha = weight[..., None]
        out = out * (1.0 - alpha) + np.asarray(layer.convert("RGB"), dtype=np.float32) * alpha
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")
