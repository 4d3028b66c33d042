"""From the mask decoder's low-res logits to masks at the original image size, as SamPredictor
makes them: the prompt moved to SAM's input frame, SAM's pick among its masks, its
postprocessing (upsample to the padded 1024 square, crop the padding, resize to the image)
and the threshold at logit 0. On the device the logits are on: `evaluate` counts the pixels
there, and only counts (and small previews) come back to the host."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from floodcache.prompts import Prompt
from floodcache.sam.decoder import decode, pick_by_iou
from floodcache.sam.modeling import MaskDecoder, PromptEncoder
from floodcache.sam.preprocess import IMAGE_SIZE, input_size


def input_prompt(prompt: Prompt, original_size: tuple[int, int]) -> Prompt:
    """A prompt in original-image pixels -> SAM's 1024 input frame, exactly as SamPredictor:
    each x times (input width / image width), each y likewise, in float64, as
    `ResizeLongestSide.apply_coords` and `apply_boxes` compute them (the tests check both)."""
    (height, width), (new_height, new_width) = original_size, input_size(original_size)
    scale = np.array([new_width / int(width), new_height / int(height)])

    def scaled(xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy, np.float64).reshape(-1, 2) * scale

    points = None if prompt.points is None else scaled(prompt.points)
    box = None if prompt.box is None else scaled(prompt.box).reshape(4)
    return Prompt(points=points, labels=prompt.labels, box=box)


def _to_original(padded: torch.Tensor, input_size, original_size) -> torch.Tensor:
    """Bx1x1024x1024 logits -> Bx1xHxW: the padding cropped away, the rest resized (the
    second half of `Sam.postprocess_masks`)."""
    cropped = padded[..., : int(input_size[0]), : int(input_size[1])]
    size = tuple(int(s) for s in original_size)
    return F.interpolate(cropped, size, mode="bilinear", align_corners=False)


@torch.inference_mode()
def decode_views(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    embeddings: torch.Tensor,
    views: dict,
    prompts: Sequence[Prompt | None],
    multimask: bool,
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The views whose prompt is not None, decoded in one batch: (their indices, Kx1x256x256
    low-res logits of the mask SAM picks, K predicted IoU).

    embeddings: Bx256x64x64; views: `original_size` list of (H, W); prompts: B prompts in
    original-image pixels (None = skipped). With `multimask` the mask with the highest
    predicted IoU of SAM's three is kept, as at inference.
    """
    kept = [i for i, prompt in enumerate(prompts) if prompt is not None]
    if not kept:
        empty = embeddings.new_zeros((0, 1, 256, 256))
        return kept, empty, embeddings.new_zeros((0,))
    sizes = views["original_size"]
    inputs = [input_prompt(p, sizes[i]) for i, p in enumerate(prompts) if p is not None]
    logits, iou = decode(prompt_encoder, mask_decoder, embeddings[kept], inputs, multimask)
    best, score = pick_by_iou(logits, iou)
    return kept, best, score[:, 0]


@torch.inference_mode()
def full_logits(
    lowres: torch.Tensor, input_sizes: list, original_sizes: list
) -> list[torch.Tensor]:
    """Kx1x256x256 logits -> K HxW logits at their original sizes, on the logits' device, as
    `Sam.postprocess_masks` makes them: upsampled to the padded 1024 square (once for the
    batch), the padding cropped away, the rest resized to (H, W)."""
    if not len(lowres):
        return []
    padded = F.interpolate(lowres, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return [
        _to_original(padded[k : k + 1], input_size, original_size)[0, 0]
        for k, (input_size, original_size) in enumerate(
            zip(input_sizes, original_sizes, strict=True)
        )
    ]


def full_masks(lowres: torch.Tensor, input_sizes: list, original_sizes: list) -> list[torch.Tensor]:
    """`full_logits` thresholded at SAM's 0: K HxW bool masks."""
    return [logits > 0 for logits in full_logits(lowres, input_sizes, original_sizes)]


@torch.inference_mode()
def view_logits(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    embeddings: torch.Tensor,
    views: dict,
    prompts: Sequence[Prompt | None],
    multimask: bool,
) -> list[tuple[torch.Tensor, float] | None]:
    """SAM's mask logits for each view whose prompt is not None: (HxW float32 at the original
    size, on the device; predicted IoU), else None. For callers that blend logits (predict's
    overlapping tiles) before deciding what is water.

    embeddings: Bx256x64x64; views: `input_size`, `original_size` lists of (h, w); prompts: B
    prompts in original-image pixels (None = skipped). `decode_views`, then `full_logits`.
    """
    kept, lowres, scores = decode_views(
        prompt_encoder, mask_decoder, embeddings, views, prompts, multimask
    )
    sizes = [views["input_size"][i] for i in kept], [views["original_size"][i] for i in kept]
    results: list[tuple[torch.Tensor, float] | None] = [None] * len(prompts)
    for i, logits, score in zip(kept, full_logits(lowres, *sizes), scores.tolist(), strict=True):
        results[i] = (logits.float(), float(score))
    return results


def predict_views(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    embeddings: torch.Tensor,
    views: dict,
    prompts: Sequence[Prompt | None],
    multimask: bool,
) -> list[tuple[np.ndarray, float] | None]:
    """SAM's mask for each view whose prompt is not None: (HxW bool, predicted IoU), else None:
    `view_logits` thresholded at SAM's 0."""
    made = view_logits(prompt_encoder, mask_decoder, embeddings, views, prompts, multimask)
    return [None if one is None else ((one[0] > 0).cpu().numpy(), one[1]) for one in made]
