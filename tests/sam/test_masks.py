"""From the decoder's logits to masks at the original size, as SamPredictor makes them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache.prompts import Prompt
from floodcache.sam import masks


def test_postprocess_crops_padding_before_resizing():
    """Logits positive only over the image part of the padded frame fill the whole image."""
    lowres = torch.full((1, 1, 256, 256), -5.0)
    lowres[..., :128, :] = 5.0  # a 2:1 landscape image covers the top half of the square
    (full,) = masks.full_logits(lowres, [(512, 1024)], [(300, 600)])
    assert full.shape == (300, 600)
    assert (full > 0).float().mean() > 0.99


@pytest.mark.parametrize("size", [(300, 500), (500, 300), (1080, 1920), (77, 2000), (1024, 1024)])
def test_prompts_reach_sams_input_frame_as_sam_predictor_moves_them(size):
    rng = np.random.default_rng(sum(size))
    points = rng.uniform(0, min(size), (5, 2)).astype(np.float32)
    box = np.sort(rng.uniform(0, min(size), 4).astype(np.float32).reshape(2, 2), axis=0).ravel()
    ours = masks.input_prompt(Prompt(points, np.ones(5), box), size)
    transform = ResizeLongestSide(1024)
    expected_points = transform.apply_coords(points, size).astype(np.float32)
    expected_box = transform.apply_boxes(box[None], size)[0].astype(np.float32)
    assert np.array_equal(ours.points, expected_points)
    assert np.array_equal(ours.box, expected_box)


def _sam_postprocess(lowres: torch.Tensor, input_size, original_size) -> torch.Tensor:
    """segment-anything's own `Sam.postprocess_masks`, for a 1024 px encoder."""
    encoder = SimpleNamespace(img_size=1024)
    return Sam.postprocess_masks(
        SimpleNamespace(image_encoder=encoder), lowres, input_size, original_size
    )


def test_full_masks_are_sams_postprocess_view_by_view():
    torch.manual_seed(0)
    lowres = torch.randn(3, 1, 256, 256)
    inputs, originals = [(512, 1024), (1024, 683), (1024, 1024)], [(300, 600), (900, 601), (77, 77)]
    made = masks.full_masks(lowres, inputs, originals)
    for k, (mask, input_size, original) in enumerate(zip(made, inputs, originals, strict=True)):
        assert mask.dtype == torch.bool and tuple(mask.shape) == original
        assert torch.equal(
            mask, _sam_postprocess(lowres[k : k + 1], input_size, original)[0, 0] > 0
        )
