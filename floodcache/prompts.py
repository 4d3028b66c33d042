"""Prompt strategies, one registry shared by training and evaluation.

A strategy turns a view's ground-truth water mask (HxW bool or uint8 {0,1}) into SAM prompts:
points (Kx2 float32, XY pixel indices: x = column, y = row), labels (K int32, 1 = water,
0 = background) and a box (4 float32, XYXY pixel indices with inclusive max), all in the mask's
own frame. Move them to SAM's 1024 input frame with `Prompt.scaled`; SAM's prompt encoder adds
0.5 itself to reach pixel centres, so coordinates stay pixel indices throughout.

Randomness comes only from `prompt_rng(seed, image_id, view, epoch)`, so a prompt is reproducible
from those four values and training sees fresh prompts each epoch.

Every strategy except `none` reads the ground truth: results with it measure SAM with a perfect
annotator (an oracle), not a deployed system. On a mask with no water the oracle strategies return
None, meaning "skip this view" (the caller records the skip); `none` returns an empty Prompt.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# Mixed into every prompt stream so it never coincides with another module's stream that
# happens to be seeded from the same (seed, image, view) numbers.
_PROMPT_STREAM_TAG = 0x70726F6D  # "prom"


@dataclass(frozen=True)
class PromptOptions:
    points: int = 3  # k for `points`: k water and k background clicks, like a few user clicks
    box_jitter: float = 0.0  # training-time box noise, fraction of box side; 0 at evaluation

    def __post_init__(self) -> None:
        if self.points < 1:
            raise ValueError(f"PromptOptions.points must be >= 1, got {self.points}")
        if not self.box_jitter >= 0.0:
            raise ValueError(f"PromptOptions.box_jitter must be >= 0, got {self.box_jitter}")


@dataclass(frozen=True, eq=False)
class Prompt:
    """SAM prompts for one view, in one coordinate frame (the mask's own unless scaled).

    points: Kx2 float32 XY pixel indices (x = column, y = row), or None.
    labels: K int32, 1 = water (foreground), 0 = background; None exactly when points is None.
    box:    4 float32 XYXY pixel indices, inclusive max (x1 = last water column), or None.
    An empty Prompt (all None) is the `none` strategy: no prompt at all.
    Arrays are stored as read-only copies; compare prompts with ==.
    """

    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None

    def __post_init__(self) -> None:
        if (self.points is None) != (self.labels is None):
            raise ValueError("Prompt needs both points and labels, or neither")
        if self.points is not None:
            points = _frozen_array(self.points, np.float32).reshape(-1, 2)
            labels = _frozen_array(self.labels, np.int32).reshape(-1)
            if len(points) != len(labels):
                raise ValueError(f"Prompt has {len(points)} points but {len(labels)} labels")
            object.__setattr__(self, "points", points)
            object.__setattr__(self, "labels", labels)
        if self.box is not None:
            box = _frozen_array(self.box, np.float32)
            if box.shape != (4,):
                raise ValueError(f"Prompt.box must hold 4 numbers XYXY, got shape {box.shape}")
            object.__setattr__(self, "box", box)

    @property
    def num_points(self) -> int:
        return 0 if self.points is None else len(self.points)

    def scaled(self, sx: float, sy: float, offset: float = 0.0) -> Prompt:
        """The same prompt in another frame: x -> x * sx + offset, y -> y * sy + offset.

        For SAM's resize to 1024 use sx = new_w / old_w, sy = new_h / old_h and offset 0, as
        `ResizeLongestSide.apply_coords` does.
        """
        scale = np.array([sx, sy], dtype=np.float32)
        points = None if self.points is None else self.points * scale + offset
        box = None if self.box is None else self.box * np.tile(scale, 2) + offset
        return Prompt(points=points, labels=self.labels, box=box)

    def to_dict(self) -> dict:
        """JSON-able lists: {"points": [[x, y], ...], "labels": [...], "box": [x0, y0, x1, y1]}.

        A missing part is None.
        """
        return {
            "points": None if self.points is None else self.points.tolist(),
            "labels": None if self.labels is None else self.labels.tolist(),
            "box": None if self.box is None else self.box.tolist(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        return all(
            _same_array(getattr(self, name), getattr(other, name))
            for name in ("points", "labels", "box")
        )

    __hash__ = None  # type: ignore[assignment]  # arrays are not hashable


def _frozen_array(values, dtype) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # a copy, so the caller's array stays theirs
    array.setflags(write=False)
    return array


def _same_array(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(frozen=True)
class PromptStrategy:
    """One way to prompt SAM.

    oracle: reads the ground-truth mask (results are an upper bound, not a deployed system).
    multimask: the prompt is ambiguous (one point), so run the decoder with
        multimask_output=True and use the best of its 3 masks (by IoU with the target in
        training, by the IoU head at inference).
    make(mask, rng, options): mask HxW bool or uint8 {0,1} -> Prompt in the mask's frame, or
        None when the mask has no water and the strategy needs some.
    """

    name: str
    oracle: bool
    multimask: bool
    make: Callable[[np.ndarray | None, np.random.Generator, PromptOptions], Prompt | None]
    description: str


def _reads_mask(make: Callable) -> Callable:
    """Wrap an oracle strategy: check and binarise its mask, and give None when it has no water."""

    @functools.wraps(make)
    def checked(
        mask: np.ndarray, rng: np.random.Generator, options: PromptOptions
    ) -> Prompt | None:
        mask = _binary_mask(mask)
        return make(mask, rng, options) if mask.any() else None

    return checked


def _binary_mask(mask: np.ndarray) -> np.ndarray:
    """HxW bool (C-contiguous) from an HxW bool or uint8 {0,1} mask; ValueError otherwise."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"the water mask must be HxW, got shape {mask.shape}")
    if mask.dtype != np.bool_ and mask.size and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(
            f"the water mask must hold 0 and 1 only, found values {mask.min()}..{mask.max()};"
            " binarise it first (as floodcache.data does when it reads a mask)"
        )
    return np.ascontiguousarray(mask, dtype=np.bool_)


def _water_pixels(mask: np.ndarray, water: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the water (or, with water=False, background) pixels."""
    rows, cols = np.nonzero(mask) if water else np.nonzero(~mask)
    return rows, cols


def _sample_pixels(rows: np.ndarray, cols: np.ndarray, count: int, rng) -> np.ndarray:
    """count XY pixels drawn uniformly; without replacement when there are enough."""
    picked = rng.choice(len(rows), size=count, replace=len(rows) < count)
    return np.stack([cols[picked], rows[picked]], axis=1)


def _largest_region(mask: np.ndarray) -> np.ndarray:
    """HxW bool: the largest 8-connected water region (the first one on equal areas)."""
    count, regions, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
    return regions == largest


def _center_point(mask: np.ndarray) -> np.ndarray:
    """XY of the most interior pixel of the largest water region.

    The image border counts as the region's edge (water cut by the frame is not interior).
    Where several pixels share the largest distance (a ridge), the one nearest their mean is
    taken, so a rectangle gives its middle rather than the ridge's first pixel.
    """
    region = np.pad(_largest_region(mask), 1).view(np.uint8)
    distance = cv2.distanceTransform(region, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    rows, cols = np.nonzero(distance >= distance.max() - 1e-3)
    offsets = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    nearest = int(np.argmin(offsets))
    return np.array([[cols[nearest], rows[nearest]]])


def _water_box(mask: np.ndarray, jitter: float, rng) -> np.ndarray:
    """XYXY inclusive box of all water; with jitter > 0 each edge moves by N(0, jitter * side).

    The side is the box's width in pixels (x1 - x0 + 1) for x0 and x1, its height for y0 and y1.
    The jittered box is clipped to the mask frame and its corners re-ordered so x0 <= x1, y0 <= y1.
    """
    rows, cols = _water_pixels(mask)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)
    if jitter > 0:
        width, height = box[2] - box[0] + 1, box[3] - box[1] + 1
        box += rng.normal(0.0, 1.0, size=4) * jitter * np.array([width, height, width, height])
        height_px, width_px = mask.shape
        box = np.clip(box, 0, [width_px - 1, height_px - 1, width_px - 1, height_px - 1])
        box = np.concatenate([np.sort(box[0::2]), np.sort(box[1::2])])[[0, 2, 1, 3]]
    return box


@_reads_mask
def _point(mask: np.ndarray, rng, options: PromptOptions) -> Prompt:
    """One water point, uniform over the water pixels."""
    return Prompt(
        points=_sample_pixels(*_water_pixels(mask), 1, rng), labels=np.array([1]), box=None
    )


@_reads_mask
def _center(mask: np.ndarray, rng, options: PromptOptions) -> Prompt:
    """The most interior point of the largest water region (deterministic)."""
    return Prompt(points=_center_point(mask), labels=np.array([1]), box=None)


@_reads_mask
def _points(mask: np.ndarray, rng, options: PromptOptions) -> Prompt:
    """k water points (label 1) then k background points (label 0), k = options.points.

    Drawn without replacement where there are enough pixels. A mask that is all water has no
    background to click, so the prompt then holds only the k water points.
    """
    k = options.points
    positives = _sample_pixels(*_water_pixels(mask), k, rng)
    if mask.all():
        return Prompt(points=positives, labels=np.array([1] * k), box=None)
    negatives = _sample_pixels(*_water_pixels(mask, water=False), k, rng)
    return Prompt(
        points=np.concatenate([positives, negatives]), labels=np.array([1] * k + [0] * k), box=None
    )


@_reads_mask
def _box(mask: np.ndarray, rng, options: PromptOptions) -> Prompt:
    """The bounding box of all water (jittered by options.box_jitter)."""
    return Prompt(points=None, labels=None, box=_water_box(mask, options.box_jitter, rng))


@_reads_mask
def _box_and_center(mask: np.ndarray, rng, options: PromptOptions) -> Prompt:
    """The `box` prompt plus the `center` point."""
    box = _water_box(mask, options.box_jitter, rng)
    return Prompt(points=_center_point(mask), labels=np.array([1]), box=box)


NO_PROMPT = Prompt(points=None, labels=None, box=None)  # the decoder finds the water alone


def _no_prompt(mask: np.ndarray | None, rng, options: PromptOptions) -> Prompt:
    """No prompt: the decoder must find the water on its own."""
    return NO_PROMPT


PROMPTS: dict[str, PromptStrategy] = {
    strategy.name: strategy
    for strategy in (
        PromptStrategy(
            name="point",
            oracle=True,
            multimask=True,
            make=_point,
            description="one random water point",
        ),
        PromptStrategy(
            name="center",
            oracle=True,
            multimask=True,
            make=_center,
            description="the most interior point of the largest water region",
        ),
        PromptStrategy(
            name="points",
            oracle=True,
            multimask=False,
            make=_points,
            description="k random water points and k random background points",
        ),
        PromptStrategy(
            name="box",
            oracle=True,
            multimask=False,
            make=_box,
            description="the bounding box of all water (jittered in training)",
        ),
        PromptStrategy(
            name="box+point",
            oracle=True,
            multimask=False,
            make=_box_and_center,
            description="the water box plus the center point",
        ),
        PromptStrategy(
            name="none",
            oracle=False,
            multimask=False,
            make=_no_prompt,
            description="no prompt: the decoder finds the water on its own",
        ),
    )
}


def prompt_rng(seed: int, image_id: str, view: int, epoch: int) -> np.random.Generator:
    """An independent random stream for one (seed, image, view, epoch).

    The image id enters through a stable hash (SHA-256), not Python's per-process `hash()`, so
    the stream is the same in every process and on every machine.
    """
    for name, value in (("seed", seed), ("view", view), ("epoch", epoch)):
        if value < 0:
            raise ValueError(f"prompt_rng needs {name} >= 0, got {value}")
    image_hash = int.from_bytes(hashlib.sha256(image_id.encode("utf-8")).digest()[:16], "little")
    entropy = [_PROMPT_STREAM_TAG, seed, image_hash, view, epoch]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def parse_prompts(text: str) -> list[PromptStrategy]:
    """Parse a comma-separated list such as "point,box,none" into strategies, each once, in order.

    An unknown or empty list raises ValueError naming the valid strategies.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROMPTS]
    if unknown or not names:
        raise ValueError(
            f"unknown prompt strategy {', '.join(map(repr, unknown)) or 'list (empty)'}; "
            f"choose comma-separated names from: {', '.join(PROMPTS)}"
        )
    return [PROMPTS[name] for name in dict.fromkeys(names)]


def make_prompt(
    strategy: PromptStrategy,
    mask: np.ndarray | None,
    seed: int,
    image_id: str,
    view: int,
    epoch: int,
    options: PromptOptions = PromptOptions(),  # noqa: B008 (frozen, so sharing it is safe)
) -> Prompt | None:
    """The strategy's prompt for one view's mask (HxW bool or uint8 {0,1}), in the mask's frame.

    None when an oracle strategy meets a mask without water: skip the view and record it.
    mask may be None only for a strategy that does not read it (`none`).

    Seven parameters: besides the strategy, the mask and the options, the four that key the
    prompt's random stream (`prompt_rng`), which training, evaluation and the tests each
    vary on their own.
    """
    if mask is None and strategy.oracle:
        raise ValueError(f"prompt strategy {strategy.name!r} needs the view's water mask")
    return strategy.make(mask, prompt_rng(seed, image_id, view, epoch), options)
