"""What a user chooses among, named once and without torch: model types, precisions, resize
methods and bench's optional stages.

The command line builds its options from these. Keeping them out of the modules that act on
them lets `python cli.py --help` answer at once: importing torch, torchvision and
albumentations takes ~5 s on the development CPU.
"""

from __future__ import annotations

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

PRECISIONS = ("fp32", "fp16", "bf16")  # the encoder's (`encoder.DTYPES` gives their dtypes)
TRAIN_PRECISIONS = ("fp32", "bf16")  # fp16 training would need loss scaling
AUTO_PRECISION = "auto"  # the device's best: `encoder.resolve_precision`, `train.resolve_precision`

BENCH_SKIPPABLE = {  # stages `bench --skip` can leave out, and what they are
    "eager-encoders": "the uncompiled encoder rows (on CUDA, where compiled ones run)",
    "mask-encoders": "the fast encoder with the mask attention where folded is the default",
    "compression": "the cache's size and I/O with compression",
    "writing": "embed's cache writing alone, in line and in the background",
    "predict": "predict on a folder of the bench's images",
}
