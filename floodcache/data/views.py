"""The train/val/test split and the deterministic augmented views of each image.

A view is (image_id, view): view 0 is the image itself; training images get `augment` more
views from one albumentations recipe, each reproducible from (seed, image_id, view). The split is
fixed per image before any augmentation, so no augmented copy of a test image reaches training.
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from floodcache.sam.preprocess import input_size, resize_to_input
from floodcache.settings import DEFAULT_FRACTIONS


@dataclass(frozen=True)
class ViewKey:
    """One row of the cache: an image, which view of it, and its split."""

    image_id: str
    view: int  # 0 = the un-augmented image
    split: str


def stable_seed(seed: int, *parts: str | int) -> int:
    """A 32-bit seed from a run seed and names, identical in every process (unlike hash())."""
    words = [seed] + [zlib.crc32(str(part).encode()) for part in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def assign_splits(
    image_ids: list[str],
    seed: int,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    groups: dict[str, str] | None = None,
) -> dict[str, str]:
    """image_id -> "train" | "val" | "test", deterministic in (seed, set of ids).

    Images are ordered by a per-image hash of (seed, image_id), so an image keeps its split when
    other images are added or excluded, and cut at exact counts; with three or more images val
    and test get at least one each. Images with the same `groups` value (e.g. the same pixels)
    are kept together in the split of the first of them, so duplicates cannot leak from
    training into evaluation.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    group_of = {i: (groups or {}).get(i, i) for i in image_ids}
    leader: dict[str, str] = {}
    for image_id in sorted(image_ids):
        leader.setdefault(group_of[image_id], image_id)
    order = sorted(
        image_ids,
        key=lambda i: (stable_seed(seed, leader[group_of[i]]), leader[group_of[i]], i),
    )
    n = len(order)
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val, n_test = max(n_val, 1 if fractions[1] else 0), max(n_test, 1 if fractions[2] else 0)
    n_train = n - n_val - n_test
    cut = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    split_of_group: dict[str, str] = {}
    for image_id, split in zip(order, cut, strict=True):
        split_of_group.setdefault(group_of[image_id], split)
    return {image_id: split_of_group[group_of[image_id]] for image_id in image_ids}


def plan_views(image_ids: list[str], splits: dict[str, str], augment: int) -> list[ViewKey]:
    """Every view to embed, in cache order: images in the given order, views ascending.

    Training images get views 0..augment, val/test images view 0 only.
    """
    return [
        ViewKey(image_id, view, splits[image_id])
        for image_id in image_ids
        for view in range(1 + (augment if splits[image_id] == "train" else 0))
    ]


def augmentation() -> A.Compose:
    """The augmentation recipe: geometric (the mask follows) and photometric transforms.

    No vertical flip: flood photos have sky on top and water below, and SAM should keep that.
    Affine borders are filled with black image and no-water mask.
    """
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                rotate=(-15, 15),
                scale=(0.8, 1.2),
                translate_percent=(-0.05, 0.05),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.6),
            A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=15, p=0.5),
            A.OneOf(
                [A.GaussianBlur(sigma_limit=(0.5, 2.0)), A.MotionBlur(blur_limit=(3, 7))], p=0.3
            ),
            A.OneOf(
                # Weather. Not RandomFog: it blends thousands of circles, over a hundred
                # times the cost of the whole recipe, and would bound embed's readers.
                [A.RandomRain(), A.RandomShadow(shadow_roi=(0, 0, 1, 1))],
                p=0.3,
            ),
        ]
    )


def augmentation_recipe() -> str:
    """The recipe as albumentations' own JSON serialisation, recorded in the cache config."""
    return json.dumps(A.to_dict(augmentation()), sort_keys=True)


@functools.cache
def _shared_augmentation() -> A.Compose:
    """One recipe per process, re-seeded for every view: building it is a cost per view, and
    re-seeding resets all its randomness, so the views are the same as from a fresh one."""
    return augmentation()


# What augmented views are made from, recorded in a cache's identity (see `view_base`)
AUGMENTED_FROM = "the image resized to SAM's input (views.view_base)"


def view_base(
    image: np.ndarray, mask: np.ndarray, resized: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """What an image's augmented views are made from: the image resized to SAM's input
    exactly as the encoder resizes it (`preprocess.resize_to_input`; `resized` if already made),
    and the mask area-resized to the same size and cut at one half.

    The encoder sees every view at that size. Augmented there, a view needs no resize of
    its own, and a large photo is not augmented at its full size. With `--resize torch` the
    readers resize an image only for its augmented views, and the device resizes none of
    them.
    """
    h, w = input_size(image.shape[:2])
    resized = resize_to_input(image) if resized is None else resized
    if mask.shape == (h, w):
        return resized, mask
    grey = cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA)
    return resized, (grey >= 128).astype(np.uint8)


def make_view(
    image: np.ndarray,
    mask: np.ndarray,
    seed: int,
    image_id: str,
    view: int,
    base: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """View `view` of an image: (hxwx3 uint8 RGB, hxw uint8 {0,1}).

    View 0 returns the inputs unchanged; other views are the augmentation of `view_base`
    (at SAM's input size; `base` if already made), reproducible from (seed, image_id, view).
    """
    if view == 0:
        return image, mask
    base_image, base_mask = base if base is not None else view_base(image, mask)
    transform = _shared_augmentation()
    transform.set_random_seed(stable_seed(seed, image_id, view))
    out = transform(image=base_image, mask=base_mask)
    return np.ascontiguousarray(out["image"]), np.ascontiguousarray(out["mask"])
