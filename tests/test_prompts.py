"""Tests for floodcache/prompts.py: hand-made masks whose prompts are known, plus real masks."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from floodcache.prompts import (
    PROMPTS,
    Prompt,
    PromptOptions,
    make_prompt,
    parse_prompts,
    prompt_rng,
)
from tests.helpers import PROJECT, REAL_DATA, blobs, on_water, prompt, rectangle

REAL_MASKS = REAL_DATA / "Mask"


ORACLES = [name for name, strategy in PROMPTS.items() if strategy.oracle]


def test_registry_names_and_flags():
    flags = {name: (s.oracle, s.multimask) for name, s in PROMPTS.items()}
    assert flags == {
        "point": (True, True),
        "center": (True, True),
        "points": (True, False),
        "box": (True, False),
        "box+point": (True, False),
        "none": (False, False),
    }
    assert all(s.name == name and s.description for name, s in PROMPTS.items())


def test_box_is_the_water_extent():
    box = prompt("box", rectangle(rows=(10, 19), cols=(20, 49)))
    assert box.points is None and box.labels is None
    assert box.box.dtype == np.float32
    assert box.box.tolist() == [20, 10, 49, 19]  # XYXY, inclusive max


def test_box_spans_all_water_regions():
    mask = rectangle(rows=(2, 5), cols=(3, 8)) | rectangle(rows=(20, 30), cols=(40, 50))
    assert prompt("box", mask).box.tolist() == [3, 2, 50, 30]


def test_center_is_the_middle_of_a_rectangle():
    center = prompt("center", rectangle(rows=(10, 30), cols=(5, 45)))
    assert center.points.tolist() == [[25, 20]]
    assert center.labels.tolist() == [1]
    assert center.box is None


def test_center_of_an_even_rectangle_is_within_half_a_pixel_of_the_middle():
    ((x, y),) = prompt("center", rectangle(rows=(10, 29), cols=(4, 43))).points
    assert abs(x - 23.5) <= 0.5 and abs(y - 19.5) <= 0.5


def test_center_picks_the_largest_region():
    # The square is deeper (6 px to its edge) but the thin strip has more water: 174 > 121 px.
    square = rectangle(rows=(2, 12), cols=(2, 12))
    strip = rectangle(rows=(30, 32), cols=(1, 58))
    center = prompt("center", square | strip)
    assert center.points.tolist() == [[29, 31]]
    short_strip = rectangle(rows=(30, 32), cols=(1, 30))  # 90 px: now the square is largest
    assert prompt("center", square | short_strip).points.tolist() == [[7, 7]]


def test_center_treats_the_frame_as_the_water_edge():
    # Water fills the bottom half: its interior is the half's middle row, not the bottom row.
    center = prompt("center", rectangle(shape=(40, 41), rows=(20, 39), cols=(0, 40)))
    ((x, y),) = center.points
    assert x == 20 and abs(y - 29.5) <= 0.5


def test_center_is_deterministic():
    mask = blobs()
    centers = {
        tuple(prompt("center", mask, epoch=e, view=v).points[0]) for e in range(3) for v in (0, 1)
    }
    assert len(centers) == 1
    assert on_water(mask, np.array(list(centers)))[0]


def test_point_lands_on_water():
    mask = blobs()
    for epoch in range(200):
        point = prompt("point", mask, epoch=epoch)
        assert point.points.shape == (1, 2) and point.labels.tolist() == [1]
        assert point.points.dtype == np.float32 and point.labels.dtype == np.int32
        assert on_water(mask, point.points).all()


def test_point_is_uniform_over_water_pixels():
    small = rectangle(shape=(30, 30), rows=(0, 9), cols=(0, 9))  # 100 pixels
    large = rectangle(shape=(30, 30), rows=(15, 29), cols=(10, 29))  # 300 pixels
    hits = [on_water(small, prompt("point", small | large, epoch=e).points)[0] for e in range(2000)]
    assert 0.21 < np.mean(hits) < 0.29  # expected 0.25; sd about 0.01


def test_points_positives_on_water_and_negatives_off_water():
    mask = blobs()
    for epoch in range(50):
        points = prompt("points", mask, epoch=epoch, points=4)
        assert points.labels.tolist() == [1] * 4 + [0] * 4
        assert on_water(mask, points.points).tolist() == [True] * 4 + [False] * 4
        assert len({tuple(p) for p in points.points}) == 8  # drawn without replacement
        assert points.box is None


def test_points_on_an_all_water_mask_has_only_positives():
    points = prompt("points", np.ones((10, 12), dtype=bool), points=3)
    assert points.labels.tolist() == [1, 1, 1]
    assert points.points.shape == (3, 2)


def test_points_with_fewer_water_pixels_than_k_repeats_them():
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[4, 6] = 1
    points = prompt("points", mask, points=3)
    assert points.points[:3].tolist() == [[6, 4]] * 3
    assert not on_water(mask, points.points[3:]).any()


@pytest.mark.parametrize("name", list(PROMPTS))
def test_same_seed_image_view_epoch_gives_the_same_prompt(name):
    mask = blobs()
    first = prompt(name, mask, epoch=3, view=2, box_jitter=0.1)
    again = prompt(name, mask, epoch=3, view=2, box_jitter=0.1)
    assert first == again and first.to_dict() == again.to_dict()


def test_each_of_seed_image_view_epoch_changes_the_point():
    mask = np.ones((100, 100), dtype=bool)
    base = make_prompt(PROMPTS["point"], mask, 0, "a", 0, 0)
    changed = [
        make_prompt(PROMPTS["point"], mask, 1, "a", 0, 0),
        make_prompt(PROMPTS["point"], mask, 0, "b", 0, 0),
        make_prompt(PROMPTS["point"], mask, 0, "a", 1, 0),
        make_prompt(PROMPTS["point"], mask, 0, "a", 0, 1),
    ]
    assert all(other != base for other in changed)


def test_prompt_rng_is_the_same_in_another_process():
    # A different PYTHONHASHSEED catches a stream seeded from Python's per-process hash().
    code = "from floodcache.prompts import prompt_rng; print(prompt_rng(3, 'img', 1, 2).random())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(out.stdout) == prompt_rng(3, "img", 1, 2).random()


def test_prompt_rng_rejects_negative_numbers():
    with pytest.raises(ValueError, match="epoch"):
        prompt_rng(0, "img", 0, -1)


@pytest.mark.parametrize("name", ["box", "box+point"])
def test_zero_jitter_gives_the_exact_box(name):
    mask = rectangle(rows=(10, 19), cols=(20, 49))
    boxes = {tuple(prompt(name, mask, epoch=e, box_jitter=0.0).box) for e in range(20)}
    assert boxes == {(20, 10, 49, 19)}


@pytest.mark.parametrize("name", ["box", "box+point"])
def test_jitter_varies_the_box_inside_the_frame(name):
    mask = rectangle(shape=(40, 60), rows=(0, 30), cols=(5, 59))  # touches the top and right
    boxes = np.array([prompt(name, mask, epoch=e, box_jitter=0.3).box for e in range(200)])
    assert len({tuple(b) for b in boxes}) > 150  # a box clipped on all four edges repeats
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 59).all() and (boxes[:, [1, 3]] <= 39).all()
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()


def test_jitter_moves_each_edge_by_a_fraction_of_the_box_side():
    mask = rectangle(shape=(300, 300), rows=(130, 149), cols=(110, 189))  # 20 high, 80 wide
    boxes = np.array([prompt("box", mask, epoch=e, box_jitter=0.1).box for e in range(1000)])
    shifts = boxes - np.array([110, 130, 189, 149])
    assert np.allclose(shifts.mean(axis=0), 0, atol=0.6)
    assert np.allclose(shifts.std(axis=0), [8, 2, 8, 2], rtol=0.1)


def test_box_plus_point_is_the_box_and_the_center():
    mask = rectangle(rows=(10, 30), cols=(5, 45))
    both = prompt("box+point", mask)
    assert both.box.tolist() == prompt("box", mask).box.tolist()
    assert both.points.tolist() == prompt("center", mask).points.tolist()
    assert both.labels.tolist() == [1]


@pytest.mark.parametrize("name", ORACLES)
def test_empty_mask_skips_the_view_for_oracle_strategies(name):
    assert prompt(name, np.zeros((20, 30), dtype=np.uint8)) is None
    assert prompt(name, np.zeros((0, 0), dtype=bool)) is None


def test_none_gives_an_empty_prompt_with_or_without_a_mask():
    empty = Prompt(points=None, labels=None, box=None)
    assert prompt("none", blobs()) == empty
    assert prompt("none", np.zeros((5, 5), dtype=bool)) == empty
    assert prompt("none", None) == empty
    assert empty.to_dict() == {"points": None, "labels": None, "box": None}


@pytest.mark.parametrize("name", ORACLES)
def test_oracle_strategies_need_a_mask(name):
    with pytest.raises(ValueError, match="needs the view's water mask"):
        prompt(name, None)


def test_masks_must_be_binary_and_two_dimensional():
    with pytest.raises(ValueError, match="binarise"):
        prompt("box", rectangle() * 255)
    with pytest.raises(ValueError, match="HxW"):
        prompt("box", np.ones((4, 4, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", list(PROMPTS))
def test_uint8_and_bool_masks_give_the_same_prompt(name):
    mask = blobs()
    assert prompt(name, mask) == prompt(name, mask.astype(np.uint8))


def test_scaled_maps_points_and_box():
    original = Prompt(points=[[10, 20], [0, 1]], labels=[1, 0], box=[1, 2, 3, 4])
    scaled = original.scaled(2.0, 3.0, offset=0.5)
    assert scaled.points.tolist() == [[20.5, 60.5], [0.5, 3.5]]
    assert scaled.box.tolist() == [2.5, 6.5, 6.5, 12.5]
    assert scaled.labels.tolist() == [1, 0]
    assert scaled.points.dtype == np.float32 and scaled.box.dtype == np.float32
    assert original.points.tolist() == [[10, 20], [0, 1]]  # unchanged
    empty = Prompt(points=None, labels=None, box=None)
    assert empty.scaled(2.0, 2.0) == empty


def test_prompt_is_read_only_and_checks_its_parts():
    point = Prompt(points=[[1, 2]], labels=[1], box=None)
    with pytest.raises(ValueError):
        point.points[0, 0] = 5
    with pytest.raises(ValueError, match="both points and labels"):
        Prompt(points=[[1, 2]], labels=None, box=None)
    with pytest.raises(ValueError, match="labels"):
        Prompt(points=[[1, 2], [3, 4]], labels=[1], box=None)
    with pytest.raises(ValueError, match="XYXY"):
        Prompt(points=None, labels=None, box=[1, 2, 3])


@pytest.mark.parametrize("name", list(PROMPTS))
def test_to_dict_is_json(name):
    stored = prompt(name, blobs()).to_dict()
    assert json.loads(json.dumps(stored)) == stored


def test_parse_prompts():
    names = [s.name for s in parse_prompts(" point, box+point,none,point ")]
    assert names == ["point", "box+point", "none"]
    assert [s.name for s in parse_prompts(",".join(PROMPTS))] == list(PROMPTS)


@pytest.mark.parametrize("text", ["point,bogus", "", " , "])
def test_parse_prompts_names_the_valid_strategies(text):
    with pytest.raises(ValueError) as error:
        parse_prompts(text)
    assert all(name in str(error.value) for name in PROMPTS)


@pytest.mark.skipif(not REAL_MASKS.is_dir(), reason="real data set not present")
def test_prompts_on_real_flood_masks():
    paths = sorted(REAL_MASKS.glob("*.png"))[:6]
    assert paths, f"no masks in {REAL_MASKS}"
    for path in paths:
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
        height, width = mask.shape
        for name, strategy in PROMPTS.items():
            made = make_prompt(strategy, mask, 0, path.stem, 0, 0, PromptOptions(box_jitter=0.1))
            if not mask.any():
                assert made is None or not strategy.oracle
                continue
            if made.points is not None:
                assert on_water(mask, made.points[made.labels == 1]).all(), (path, name)
                assert not on_water(mask, made.points[made.labels == 0]).any(), (path, name)
            if made.box is not None:
                x0, y0, x1, y1 = made.box
                assert 0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1, (path, name)
