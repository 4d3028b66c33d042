"""The split and the augmented views."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache.data import pairs as data
from floodcache.data.views import (
    ViewKey,
    assign_splits,
    augmentation,
    make_view,
    plan_views,
    stable_seed,
    view_base,
)
from floodcache.embed.readers import ViewDataset
from floodcache.sam import preprocess


def test_split_is_seeded_exact_and_stable():
    ids = [str(i) for i in range(100)]
    splits = assign_splits(ids, seed=3)
    assert splits == assign_splits(list(reversed(ids)), seed=3)
    counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 70, "val": 15, "test": 15}
    assert splits != assign_splits(ids, seed=4)
    # Dropping one image (e.g. excluded by the audit) moves no other image to another split.
    fewer = assign_splits(ids[1:], seed=3)
    moved = [i for i in ids[1:] if fewer[i] != splits[i]]
    assert len(moved) <= 2


def test_duplicate_images_share_a_split():
    ids = [str(i) for i in range(40)]
    groups = {"3": "same-pixels", "17": "same-pixels", "25": "same-pixels"}
    for seed in range(10):
        splits = assign_splits(ids, seed, groups=groups)
        assert len({splits["3"], splits["17"], splits["25"]}) == 1


def test_small_sets_still_get_val_and_test():
    splits = assign_splits(["a", "b", "c", "d"], seed=0)
    assert sorted(splits.values()).count("val") == 1
    assert sorted(splits.values()).count("test") == 1


def test_plan_gives_augmented_views_to_training_images_only():
    splits = {"a": "train", "b": "val", "c": "test"}
    plan = plan_views(["a", "b", "c"], splits, augment=2)
    assert [(k.image_id, k.view, k.split) for k in plan] == [
        ("a", 0, "train"),
        ("a", 1, "train"),
        ("a", 2, "train"),
        ("b", 0, "val"),
        ("c", 0, "test"),
    ]


def scene():
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:240, :320]
    mask = (rows > cols * 0.75).astype(np.uint8)  # bottom-left triangle: a flip moves it
    image = np.where(mask[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
    return image, mask


def test_view_zero_is_the_image_itself():
    image, mask = scene()
    out_image, out_mask = make_view(image, mask, seed=0, image_id="7", view=0)
    assert out_image is image and out_mask is mask


def test_views_are_reproducible_and_distinct():
    image, mask = scene()
    first = make_view(image, mask, seed=0, image_id="7", view=1)
    again = make_view(image, mask, seed=0, image_id="7", view=1)
    other = make_view(image, mask, seed=0, image_id="7", view=2)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert set(np.unique(first[1])) <= {0, 1}
    h, w = preprocess.input_size(image.shape[:2])  # made at SAM's input size
    assert first[0].shape == (h, w, 3) and first[1].shape == (h, w)


def test_a_view_does_not_depend_on_the_views_made_before_it():
    """make_view re-seeds one recipe per process: nothing carries over from view to view."""
    image, mask = scene()
    keys = [("7", 1), ("8", 2), ("7", 3), ("9", 1), ("8", 4)]
    forward = {key: make_view(image, mask, 0, *key) for key in keys}
    backward = {key: make_view(image, mask, 0, *key) for key in reversed(keys)}
    base_image, base_mask = view_base(image, mask)
    for image_id, view in keys:
        fresh = augmentation()
        fresh.set_random_seed(stable_seed(0, image_id, view))
        out = fresh(image=base_image, mask=base_mask)
        for made in (forward[image_id, view], backward[image_id, view]):
            assert np.array_equal(made[0], out["image"]) and np.array_equal(made[1], out["mask"])


def test_views_are_reproducible_across_processes():
    code = (
        "import numpy as np, hashlib; from tests.data.test_views import scene; "
        "from floodcache.data.views import make_view; im, m = scene(); "
        "v = make_view(im, m, 5, 'x', 3); print(hashlib.sha256(v[0].tobytes() + v[1].tobytes())"
        ".hexdigest())"
    )
    out = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    image, mask = scene()
    import hashlib

    view = make_view(image, mask, 5, "x", 3)
    assert out == {hashlib.sha256(view[0].tobytes() + view[1].tobytes()).hexdigest() + "\n"}


def test_mask_follows_the_geometric_transform():
    """The bright pixels are the water: after any view, the mask still covers them."""
    image, mask = scene()
    for view in range(1, 9):
        out_image, out_mask = make_view(image, mask, seed=1, image_id="7", view=view)
        grey = cv2.cvtColor(out_image, cv2.COLOR_RGB2GRAY)
        # Photometric transforms move the brightness: split dark from bright per view (Otsu).
        _, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        bright = bright.astype(bool)
        inside = grey > 0  # affine borders are black: not a fair judge
        agreement = (bright == out_mask.astype(bool))[inside].mean()
        mirrored = (bright == np.fliplr(out_mask).astype(bool))[inside].mean()
        # Random shadows darken some water, so not always 1.0; a wrongly flipped mask is ~0.5.
        assert agreement > 0.75 and agreement > mirrored + 0.15, (view, agreement, mirrored)


def large_scene(height: int = 1200, width: int = 1700) -> tuple[np.ndarray, np.ndarray]:
    """A photo (by default larger than SAM's input): water (bright) below a slanted line."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:height, :width]
    mask = (rows > height * 0.4 + cols * 0.2).astype(np.uint8)
    image = np.where(mask[..., None] == 1, 190, 50) + rng.integers(0, 20, (height, width, 3))
    return image.clip(0, 255).astype(np.uint8), mask


@pytest.mark.parametrize("size", [(1100, 1500), (300, 500)], ids=["larger", "smaller"])
def test_an_image_is_augmented_at_sams_input_size(size):
    """Views are made from the image resized to SAM's input as the encoder resizes it (its
    mask area-resized alike), larger or smaller than that input: the recipe on those pixels."""
    image, mask = large_scene(*size)
    h, w = preprocess.input_size(image.shape[:2])
    base_image, base_mask = view_base(image, mask)
    assert np.array_equal(base_image, preprocess.resize_to_input(image))
    area = cv2.resize(mask * 255, (w, h), interpolation=cv2.INTER_AREA)
    assert np.array_equal(base_mask, (area >= 128).astype(np.uint8))
    assert 0.3 < base_mask.mean() < 0.7 and abs(base_mask.mean() - mask.mean()) < 0.01
    for view in (1, 2, 3):
        out_image, out_mask = make_view(image, mask, 0, "big", view)
        assert out_image.shape == (h, w, 3) and out_mask.shape == (h, w)
        fresh = augmentation()
        fresh.set_random_seed(stable_seed(0, "big", view))
        out = fresh(image=base_image, mask=base_mask)
        assert np.array_equal(out_image, out["image"]) and np.array_equal(out_mask, out["mask"])
    assert make_view(image, mask, 0, "big", 0)[0] is image  # view 0: the photo itself


def test_an_image_at_sams_input_size_is_augmented_as_it_is():
    square = np.zeros((1024, 1024, 3), np.uint8), np.zeros((1024, 1024), np.uint8)
    assert all(a is b for a, b in zip(view_base(*square), square, strict=True))


@pytest.mark.parametrize("size", [(1100, 1500), (300, 500)], ids=["larger", "smaller"])
def test_readers_resize_an_image_once_for_all_its_views(tmp_path, monkeypatch, size):
    """The readers resize an image to SAM's input once: view 0's input, and its augmented
    views' base."""
    image, mask = large_scene(*size)
    (tmp_path / "Image").mkdir()
    (tmp_path / "Mask").mkdir()
    cv2.imwrite(str(tmp_path / "Image" / "a.png"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "Mask" / "a.png"), mask * 255)
    pairs = {pair.image_id: pair for pair in data.find_pairs(tmp_path)[0]}
    resizes = []
    real = ResizeLongestSide.apply_image
    monkeypatch.setattr(ResizeLongestSide, "apply_image", lambda *a: resizes.append(1) or real(*a))

    class Config:
        seed, on_mismatch, resize, max_pixels, raster = 0, "exclude", "pil", 10**8, None

    keys = [ViewKey("a", view, "train") for view in range(4)]
    alone = ViewDataset(keys[:1], pairs, Config())[0]  # a val/test image: view 0 only
    dataset = ViewDataset(keys, pairs, Config())
    made = [dataset[i] for i in range(4)]
    assert len(resizes) == 2  # once for view 0 alone, once for all four views
    assert np.array_equal(alone["resized"], made[0]["resized"])
    assert np.array_equal(made[0]["resized"], preprocess.resize_to_input(image))
    assert tuple(made[0]["original_size"]) == image.shape[:2]
    h, w = preprocess.input_size(image.shape[:2])
    for view in made[1:]:
        assert tuple(view["original_size"]) == (h, w) and view["resized"].shape == (h, w, 3)
