"""Group pictures, the torch-free parts: the preset pose layouts and their drawing, the members' regions and the
composite that keeps each region to its own member."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gpu_agent.engine.group.layouts import COLOURS, layout_ids, layout_poses, person_boxes, pose_map
from gpu_agent.engine.group.regions import composite, feathered, member_regions, same_size_boxes, work_box
from gpu_agent.engine.render_types import BadRenderRequest

SIZE = (384, 256)


@pytest.mark.parametrize("layout", ["row", "table", "stage"])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_every_layout_the_bot_sends_has_a_pose_map_for_2_3_and_4_people(layout: str, count: int) -> None:
    poses = layout_poses(layout, count)
    assert len(poses) == count
    drawn = np.asarray(pose_map(poses, SIZE))
    assert drawn.shape == (SIZE[1], SIZE[0], 3)
    # Each person's neck keypoint is drawn in OpenPose's neck colour, over a black background.
    for pose in poses:
        x, y = pose.pixels(SIZE)[1]
        assert tuple(drawn[int(y), int(x)]) == COLOURS[1]
    assert (drawn.sum(axis=2) == 0).mean() > 0.8
    boxes = person_boxes(poses, SIZE)
    centres = [(b[0] + b[2]) / 2 for b in boxes]
    assert centres == sorted(centres)  # left to right, as the members are listed
    assert all(0 <= b[0] < b[2] <= SIZE[0] and 0 <= b[1] < b[3] <= SIZE[1] for b in boxes)


def test_no_layout_means_row_and_an_unknown_one_is_refused_with_the_choices() -> None:
    assert layout_poses(None, 3) == layout_poses("row", 3)
    assert set(layout_ids()) >= {"row", "table", "stage"}
    with pytest.raises(BadRenderRequest, match="'beach' is not available; choose one of row, stage, table"):
        layout_poses("beach", 2)
    with pytest.raises(BadRenderRequest, match="not 5"):
        layout_poses("row", 5)


def test_the_pose_map_scales_with_the_render_size() -> None:
    poses = layout_poses("table", 2)
    small, large = pose_map(poses, (192, 128)), pose_map(poses, (768, 512))
    assert large.size == (768, 512)
    shrunk = np.asarray(large.resize(small.size, Image.Resampling.BILINEAR), dtype=np.float32)
    lit_small = np.asarray(small).sum(axis=2) > 0
    assert (shrunk.sum(axis=2)[lit_small] > 0).mean() > 0.8  # the same figure, drawn at each size


def test_regions_follow_the_segmenter_inside_each_box_and_never_overlap() -> None:
    boxes = [(0, 0, 60, 100), (40, 0, 100, 100)]  # overlapping boxes
    heat = np.zeros((100, 100), dtype=np.float32)
    heat[10:90, 10:90] = 0.9  # the segmenter sees people in the middle
    regions = member_regions(boxes, (100, 100), heat, grow=0)
    assert not (regions[0] & regions[1]).any()
    assert regions[0][50, 45] and regions[1][50, 55]  # contested pixels go to the nearer box centre
    assert not regions[0][5, 5] and not regions[1][95, 95]  # the segmenter's background is nobody's
    union = regions[0] | regions[1]
    assert union[10:90, 10:90].all()


def test_a_box_the_segmenter_finds_nobody_in_keeps_the_whole_box() -> None:
    heat = np.zeros((50, 100), dtype=np.float32)
    heat[:, 50:] = 1.0
    left, right = member_regions([(0, 0, 50, 50), (50, 0, 100, 50)], (100, 50), heat, grow=0)
    assert left[:, :50].all() and right[:, 50:].all()


def test_a_member_layer_reaches_only_their_region_to_the_exact_pixel() -> None:
    rng = np.random.default_rng(0)
    masks = member_regions([(0, 0, 50, 64), (50, 0, 100, 64)], (100, 64))
    weights = [feathered(m, 3) for m in masks]
    assert all(((w > 0) <= m).all() for w, m in zip(weights, masks, strict=True))
    base, a, b1, b2 = (Image.fromarray(rng.integers(0, 256, (64, 100, 3), dtype=np.uint8)) for _ in range(4))
    one = np.asarray(composite(base, [a, b1], weights))
    two = np.asarray(composite(base, [a, b2], weights))
    assert (one[masks[0]] == two[masks[0]]).all()
    assert (one[masks[1]] != two[masks[1]]).any()


def test_the_work_box_is_the_region_with_context_in_multiples_of_8_inside_the_picture() -> None:
    mask = np.zeros((256, 384), dtype=bool)
    mask[30:200, 350:384] = True
    left, top, right, bottom = work_box(mask, (384, 256))
    assert (right - left) % 8 == 0 and (bottom - top) % 8 == 0 and right - left >= 64
    assert left >= 0 and right <= 384 and top >= 0 and bottom <= 256
    assert left <= 350 and top <= 30 and bottom >= 200


def test_the_members_crops_share_one_size_each_around_its_own_region() -> None:
    size = (384, 256)
    boxes = [(0, 40, 96, 200), (150, 10, 230, 250), (300, 60, 384, 180)]  # a narrow, a tall, an edge one
    same = same_size_boxes(boxes, size)
    assert {(right - left, bottom - top) for left, top, right, bottom in same} == {
        (96, 240)
    }  # the widest and the tallest
    for (l0, t0, r0, b0), (l1, t1, r1, b1) in zip(boxes, same, strict=True):
        assert min(l1, t1) >= 0 and r1 <= 384 and b1 <= 256  # inside the picture
        assert l1 <= l0 and t1 <= t0 and r0 <= r1 and b0 <= b1  # still holds its own crop
    assert same_size_boxes([(8, 8, 72, 72)], size) == [(8, 8, 72, 72)]  # one crop: unchanged
