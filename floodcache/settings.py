"""What a user chooses among, named once and without torch: model types, precisions, resize
methods, splits, and what a mismatched mask may do.

Commands build their options from these, and the stages check their configs against them.
Keeping them out of the modules that act on them lets `python cli.py --help` answer at once,
without importing torch, torchvision or albumentations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderSpec:
    """The ViT image-encoder hyper-parameters that tell SAM's model types apart."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    test_only: bool = False  # a tiny architecture for tests and smoke runs, never pretrained


MODEL_TYPES: dict[str, EncoderSpec] = {
    "vit_b": EncoderSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": EncoderSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": EncoderSpec(1280, 32, 16, (7, 15, 23, 31)),
    # Same SAM modules, two narrow windowed blocks (global attention over 4096 tokens is what
    # costs most on a CPU): lets tests embed a view in a fraction of a second.
    "vit_tiny": EncoderSpec(64, 2, 2, (), test_only=True),
}

RESIZE_METHODS = {  # --resize -> what the cache's identity records
    "pil": "segment_anything.ResizeLongestSide.apply_image (PIL, uint8)",
    "torch": "F.interpolate bilinear antialias as ResizeLongestSide.apply_image_torch, on device",
}

AUTO_PRECISION = "auto"  # the device's best for the stage (`GPU_PRECISION`, `CPU_PRECISION`)
PRECISIONS = ("fp32", "fp16", "bf16")  # the encoder's (`sam.precision.DTYPES`: their dtypes)
STAGE_PRECISIONS = {
    "encoder": PRECISIONS,
    "train": ("fp32", "bf16"),  # fp16 training would need loss scaling
}
# What `auto` means on a GPU. The encoder: fp16, ~3x fp32's speed at a relative error of
# ~1e-3, below the float16 rounding of the cache. A CPU has no fast fp16 matrix products.
GPU_PRECISION = {"encoder": "fp16", "train": "bf16"}
# What `auto` means on a CPU that does bf16 in hardware (AVX512_BF16, AMX); on any other CPU
# bf16 is emulated, slower than fp32, and `auto` is fp32. The encoder is where a CPU's time
# goes; the decoder's training is small, and keeps fp32's exact gradients.
CPU_PRECISION = {"encoder": "bf16", "train": "fp32"}

SPLITS = ("train", "val", "test")  # the values of a cache's split field
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)  # train/val/test share of the images
ON_MISMATCH = ("exclude", "resize")  # a mask whose size differs from its image's
# Largest image or mask read (--max-pixels), checked before it is decoded: decoding takes about
# ten bytes a pixel, and a small PNG can declare 13000 x 13000. Above any camera's photo.
MAX_PIXELS = 100_000_000


class OptionConflict(ValueError):
    """Options that do not go together, or one given where it means nothing (a scene's tile
    for a photo): refused, never dropped, as a wrong use of the command rather than a
    failure of its work."""


def check_choice(value: object, choices: Iterable, option: str) -> None:
    """ValueError naming `option` and its choices unless `value` is one of them."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(map(str, choices))}, not {value!r}")


def check_at_least(value: float | None, least: float, option: str) -> None:
    """ValueError naming `option` unless `value` (when given) is at least `least`."""
    if value is not None and not value >= least:
        raise ValueError(f"{option} must be at least {least}, not {value!r}")


def check_precision(precision: str, stage: str) -> None:
    """ValueError naming the choices unless `stage` (a key of STAGE_PRECISIONS) takes
    `precision` or `auto`."""
    if precision != AUTO_PRECISION and precision not in STAGE_PRECISIONS[stage]:
        raise ValueError(
            f"{stage} precision {precision!r}: choose {AUTO_PRECISION}, "
            f"{' or '.join(STAGE_PRECISIONS[stage])}"
        )
