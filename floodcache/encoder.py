"""SAM model building, SAM-exact preprocessing, and the batched image-encoder forward.

Preprocessing follows `SamPredictor.set_image` for numpy input exactly: segment-anything's
`ResizeLongestSide.apply_image` (PIL resize of the uint8 image, longest side 1024), then
`Sam.preprocess` (normalise on the 0..255 scale, zero-pad bottom/right to 1024x1024).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache.download import CHECKPOINTS, find_checkpoint, sha256_file

IMAGE_SIZE = 1024  # SAM's encoder input side
EMBEDDING_SHAPE = (256, 64, 64)  # one view's image embedding
LOWRES_SIZE = 256  # the mask decoder's low-res logits side, covering the padded 1024 square
log = logging.getLogger(__name__)
RESIZE_METHOD = "segment_anything.ResizeLongestSide.apply_image (PIL, uint8)"


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


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or not a SAM checkpoint of the asked type."""


def build_sam(model_type: str = "vit_b") -> Sam:
    """A SAM model of `model_type` with random weights, in eval mode, on the CPU."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}"
        )
    spec = MODEL_TYPES[model_type]
    return _build_sam(
        encoder_embed_dim=spec.embed_dim,
        encoder_depth=spec.depth,
        encoder_num_heads=spec.num_heads,
        encoder_global_attn_indexes=list(spec.global_attn_indexes),
        checkpoint=None,
    )


def load_sam(model_type: str, checkpoint: Path) -> Sam:
    """Build SAM of `model_type` and load `checkpoint` (a state dict of the whole `Sam` module).

    Raises CheckpointError naming the file and what to do when it is missing, unreadable
    (truncated download), not a SAM state dict, or of another model type.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist: fetch it with "
            f"`python cli.py download --model-type {model_type}` or pass --checkpoint FILE"
        )
    try:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(
            f"checkpoint {checkpoint} cannot be read ({type(err).__name__}: {err}); it is "
            "probably truncated or not a PyTorch file: download it again with "
            f"`python cli.py download --model-type {model_type}`"
        ) from err
    if not isinstance(state_dict, dict) or not any(
        str(k).startswith("image_encoder.") for k in state_dict
    ):
        raise CheckpointError(
            f"{checkpoint} is not a SAM checkpoint: expected a state dict with "
            "image_encoder.*, prompt_encoder.* and mask_decoder.* keys"
        )
    sam = build_sam(model_type)
    try:
        sam.load_state_dict(state_dict)
    except RuntimeError as err:
        found = guess_model_type(state_dict)
        hint = f" it looks like a {found} checkpoint: pass --model-type {found}" if found else ""
        raise CheckpointError(
            f"{checkpoint} does not fit SAM {model_type};{hint or ' ' + str(err)[:300]}"
        ) from err
    return sam


def guess_model_type(state_dict: dict) -> str | None:
    """The registered model type whose encoder width and depth match a state dict, if any."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    depth = 1 + max(
        (int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")),
        default=-1,
    )
    for name, spec in MODEL_TYPES.items():
        if spec.embed_dim == weight.shape[0] and spec.depth == depth:
            return name
    return None


def load_or_random_sam(
    model_type: str, checkpoint: Path | None, random_weights: bool
) -> tuple[Sam, str]:
    """SAM and the sha256 of its checkpoint, or random weights when explicitly asked for.

    Without `checkpoint`, the official file is looked for in the default checkpoint folder
    (CheckpointNotFound says how to download it).

    Random weights (seeded, so smoke runs repeat) record the marker "random-weights" instead of
    a sha256, and warn loudly: every number computed with them is meaningless.
    """
    if random_weights and checkpoint is not None:
        raise CheckpointError("pass either --checkpoint or --random-weights, not both")
    if not random_weights:
        if model_type in CHECKPOINTS:  # official weights exist: look in the default place
            checkpoint = find_checkpoint(model_type, checkpoint)
        elif checkpoint is None:
            raise CheckpointError(
                f"{model_type} has no official checkpoint: pass --checkpoint FILE, or "
                "--random-weights for a smoke test whose numbers mean nothing"
            )
        return load_sam(model_type, checkpoint), sha256_file(Path(checkpoint))
    warn_random_weights()
    torch.manual_seed(0)  # the same random SAM every time, so smoke runs are reproducible
    return build_sam(model_type), "random-weights"


def warn_random_weights() -> None:
    """Say loudly that a run uses an untrained SAM."""
    log.warning(
        "\n%s\nRANDOM WEIGHTS: this SAM was never trained. Embeddings, masks and metrics "
        "computed with it are MEANINGLESS; use it only to test the pipeline.\n%s",
        "!" * 78,
        "!" * 78,
    )


def resize_to_input(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> hxwx3 uint8, longest side 1024, exactly as SamPredictor.set_image."""
    return ResizeLongestSide(IMAGE_SIZE).apply_image(image)


def input_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the resized image inside the padded 1024 square, for an (H, W) original."""
    return tuple(ResizeLongestSide.get_preprocess_shape(*original_size, IMAGE_SIZE))


def lowres_target(mask: np.ndarray) -> np.ndarray:
    """HxW {0,1} mask -> 256x256 uint8 {0,1} target in the decoder's padded low-res frame.

    Built like the image: resize longest side to 1024 (bilinear, via ResizeLongestSide), pad
    bottom/right to 1024, then 4x4 area-average down to 256 and threshold at one half.
    """
    resized = resize_to_input(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8))
    padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    padded[: resized.shape[0], : resized.shape[1]] = resized[..., 0] / 255.0
    factor = IMAGE_SIZE // LOWRES_SIZE
    area = padded.reshape(LOWRES_SIZE, factor, LOWRES_SIZE, factor).mean(axis=(1, 3))
    return (area >= 0.5).astype(np.uint8)


def batch_to_tensor(sam: Sam, resized: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Resized hxwx3 uint8 views -> Bx3x1024x1024 float32, normalised, then padded."""
    batch = torch.zeros((len(resized), 3, IMAGE_SIZE, IMAGE_SIZE), device=device)
    for i, image in enumerate(resized):
        pixels = torch.as_tensor(image, device=device).permute(2, 0, 1)[None].float()
        batch[i : i + 1] = sam.preprocess(pixels)
    return batch


PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


@contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast the encoder to `precision` ('fp32' runs without autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@torch.inference_mode()
def encode(
    sam: Sam, resized: list[np.ndarray], device: torch.device, precision: str = "fp32"
) -> torch.Tensor:
    """Image embeddings of resized views: Bx256x64x64 float32 on `device`."""
    pixels = batch_to_tensor(sam, resized, device)
    with autocast(device, precision):
        return sam.image_encoder(pixels).float()


def pick_device(device: str | None) -> torch.device:
    """`device` as given, else CUDA when there is a GPU, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
