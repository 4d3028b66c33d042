"""SAM's image encoder on a batch of views: segment-anything's own forward, or the fast one
(`fast_encoder`) with the same weights and maths (`batch_encoder` sizes and streams batches)."""

from __future__ import annotations

import numpy as np
import torch

from floodcache.sam.device_resize import batch_to_tensor
from floodcache.sam.fast_encoder import compile_wanted, fast_image_encoder
from floodcache.sam.modeling import Sam
from floodcache.sam.precision import autocast


@torch.inference_mode()
def encode(
    sam: Sam,
    resized: list[np.ndarray],
    device: torch.device,
    precision: str = "fp32",
    fast: bool = False,
    compile: bool | None = None,
    resize: str = "pil",
    attention: str | None = None,
) -> torch.Tensor:
    """Image embeddings of resized views: Bx256x64x64 float32 on `device`.

    `fast` runs the same weights and maths through `fast_image_encoder` (fused attention,
    `attention` as it says, default the device's), compiled when `compile` (default:
    `compile_wanted(device)`, so on CUDA); without it,
    segment-anything's own `ImageEncoderViT.forward`. With resize="torch" the views come at
    their own size and are resized on the device (`batch_to_tensor`).

    Eight parameters: after the views and the device, each is one way of running the same
    encoder with its default, and the bench and the tests vary them one at a time.
    """
    pixels = batch_to_tensor(sam, resized, device, resize)
    forward = sam.image_encoder
    if fast:
        compile = compile_wanted(device) if compile is None else compile
        forward = fast_image_encoder(sam.image_encoder, compile, attention)
    with autocast(device, precision):
        return forward(pixels).float()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference|| over all elements, in float32: how far embeddings
    (tensors or arrays, float16 cached ones too) are from the reference ones."""
    ours, reference = (torch.as_tensor(x).float() for x in (ours, reference))
    return float((ours - reference).norm() / reference.norm())
