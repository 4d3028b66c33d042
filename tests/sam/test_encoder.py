"""The image encoder on a batch: SamPredictor's embeddings, in every precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from floodcache.sam import encoder, preprocess
from floodcache.sam.encoder import relative_error
from floodcache.sam.model import load_sam


def test_batched_encode_matches_predictor_tiny(tiny_checkpoint):
    """Several sizes in one batch give each image's SamPredictor embedding (fp32)."""
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 255, shape, dtype=np.uint8)
        for shape in [(120, 200, 3), (300, 100, 3), (64, 64, 3)]
    ]
    batch = encoder.encode(
        sam, [preprocess.resize_to_input(im) for im in images], torch.device("cpu")
    )
    predictor = SamPredictor(sam)
    for image, ours in zip(images, batch, strict=True):
        predictor.set_image(image)
        assert relative_error(ours, predictor.features[0]) < 1e-5


@pytest.mark.parametrize("precision,tolerance", [("bf16", 5e-2), ("fp16", 1e-2)])
def test_autocast_precisions_stay_close(tiny_checkpoint, precision, tolerance):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    image = [preprocess.resize_to_input(np.full((100, 150, 3), 120, np.uint8))]
    reference = encoder.encode(sam, image, torch.device("cpu"))
    low = encoder.encode(sam, image, torch.device("cpu"), precision)
    assert low.dtype == torch.float32
    assert relative_error(low, reference) < tolerance


def test_relative_error_of_tensors_and_float16_arrays():
    reference = torch.tensor([3.0, 4.0])  # norm 5
    assert relative_error(reference, reference) == 0.0
    assert relative_error(torch.tensor([3.0, 5.0]), reference) == pytest.approx(0.2)
    cached = np.array([3.0, 5.0], np.float16)  # float16 sums would round: compared in float32
    assert relative_error(cached, reference.numpy()) == pytest.approx(0.2)
