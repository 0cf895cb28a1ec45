"""Preset pose layouts of group pictures: keypoints per person (poses.json), drawn as an OpenPose pose map.

A layout id (``row``, ``table``, ``stage``; the bot sends one, None means ``row``) names one arrangement per
person count (2, 3 or 4 people, left to right). Each person is 18 OpenPose (COCO) body keypoints in fractions
of the picture's width and height, null where a point is hidden (legs under a table). ``pose_map`` draws them
as the OpenPose ControlNet was trained to read them (black background, each limb its own colour, as
controlnet_aux's ``draw_bodypose``), at the render's size; ``person_boxes`` gives each person's box, the start
of their region. Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw

from gpu_agent.engine.render_types import BadRenderRequest

POSES_FILE = Path(__file__).with_name("poses.json")
DEFAULT_LAYOUT = "row"
KEYPOINTS = 18

Point = tuple[float, float]
Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right and bottom exclusive."""

# OpenPose's limbs (pairs of keypoint indices) and its 18 colours, as the pose ControlNets were trained on.
LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
COLOURS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)


@dataclass(frozen=True)
class Pose:
    """One person: 18 keypoints (None where hidden), fractions of the picture's width and height."""

    points: tuple[Point | None, ...]

    def pixels(self, size: tuple[int, int]) -> list[tuple[float, float] | None]:
        width, height = size
        return [None if p is None else (p[0] * width, p[1] * height) for p in self.points]


@cache
def _catalogue() -> dict[str, dict[int, tuple[Pose, ...]]]:
    raw = json.loads(POSES_FILE.read_text())
    layouts: dict[str, dict[int, tuple[Pose, ...]]] = {}
    for name, by_count in raw["layouts"].items():
        layouts[name] = {}
        for count, people in by_count.items():
            poses = tuple(
                Pose(tuple(None if p is None else (float(p[0]), float(p[1])) for p in person))
                for person in people
            )
            if len(poses) != int(count) or any(len(p.points) != KEYPOINTS for p in poses):
                raise ValueError(f"{POSES_FILE.name}: layout {name!r} for {count} has a malformed person")
            layouts[name][int(count)] = poses
    return layouts


def layout_ids() -> list[str]:
    return sorted(_catalogue())


def layout_poses(layout: str | None, count: int) -> tuple[Pose, ...]:
    """The poses of ``layout`` (None: the default) for ``count`` people, left to right.

    Raises BadRenderRequest, with a message safe to show to the member, for an unknown layout or count."""
    name = layout or DEFAULT_LAYOUT
    known = _catalogue()
    if name not in known:
        raise BadRenderRequest(
            f"The group layout {name[:32]!r} is not available; choose one of {', '.join(layout_ids())}."
        )
    if count not in known[name]:
        counts = ", ".join(str(c) for c in sorted(known[name]))
        raise BadRenderRequest(f"The group layout {name!r} is for {counts} people, not {count}.")
    return known[name][count]


def pose_map(poses: tuple[Pose, ...], size: tuple[int, int]) -> Image.Image:
    """The OpenPose input image for these people at ``size``: limbs as filled ellipses at 60 % of their colour
    over black, then each keypoint as a dot in its colour (controlnet_aux's drawing, scaled to the size)."""
    width, height = size
    scale = max(width, height) / 512
    stick = max(1.0, 4 * scale)
    radius = max(1.0, 4 * scale)
    limbs = Image.new("RGB", size)
    draw = ImageDraw.Draw(limbs)
    for pose in poses:
        points = pose.pixels(size)
        for index, (a, b) in enumerate(LIMBS):
            pa, pb = points[a], points[b]
            if pa is None or pb is None:
                continue
            colour = tuple(int(c * 0.6) for c in COLOURS[index])
            draw.polygon(_limb_polygon(pa, pb, stick), fill=colour)
    dots = ImageDraw.Draw(limbs)
    for pose in poses:
        for index, point in enumerate(pose.pixels(size)):
            if point is not None:
                x, y = point
                dots.ellipse((x - radius, y - radius, x + radius, y + radius), fill=COLOURS[index])
    return limbs


def _limb_polygon(
    a: tuple[float, float], b: tuple[float, float], half_width: float
) -> list[tuple[float, float]]:
    """An ellipse from ``a`` to ``b``, ``half_width`` across, as a polygon (cv2.ellipse2Poly's shape)."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_length = math.hypot(x2 - x1, y2 - y1) / 2
    angle = math.atan2(y2 - y1, x2 - x1)
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for step in range(0, 360, 15):
        t = math.radians(step)
        ex, ey = half_length * math.cos(t), half_width * math.sin(t)
        out.append((cx + ex * cos - ey * sin, cy + ex * sin + ey * cos))
    return out


def person_boxes(poses: tuple[Pose, ...], size: tuple[int, int], margin: float = 0.35) -> list[Box]:
    """Each person's box: their keypoints' bounding box widened by ``margin`` of its width on each side and
    raised above the head by the head's size (the keypoints stop at the ears), inside the picture."""
    width, height = size
    boxes = []
    for pose in poses:
        every = pose.pixels(size)
        points = [p for p in every if p is not None]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
        pad_x = margin * (right - left)
        nose, neck = every[0], every[1]
        head = abs(neck[1] - nose[1]) * 1.5 if nose and neck else 0.1 * (bottom - top)
        box = (
            max(0, math.floor(left - pad_x)),
            max(0, math.floor(top - head)),
            min(width, math.ceil(right + pad_x)),
            min(height, math.ceil(bottom + 0.05 * (bottom - top))),
        )
        boxes.append(box)
    return boxes


def head_points(poses: tuple[Pose, ...], size: tuple[int, int]) -> list[tuple[int, int]]:
    """Each person's head centre in pixels (their nose; the top of their box when the nose is hidden)."""
    heads = []
    for pose, box in zip(poses, person_boxes(poses, size), strict=True):
        nose = pose.pixels(size)[0]
        heads.append((round(nose[0]), round(nose[1])) if nose else ((box[0] + box[2]) // 2, box[1]))
    return heads
