"""SAM-exact preprocessing: the resize to SAM's input and the low-res training target."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache.sam import preprocess


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (1024, 1024), (77, 2000)])
def test_input_size_matches_resize(shape):
    resized = preprocess.resize_to_input(np.zeros((*shape, 3), np.uint8))
    assert preprocess.input_size(shape) == resized.shape[:2]
    assert max(resized.shape[:2]) == 1024


@pytest.mark.parametrize("shape", [(1024, 700), (576, 1024), (1024, 1024)])
def test_an_image_at_sams_input_size_is_resized_to_itself(shape):
    """As SamPredictor's PIL resize makes it (a copy), without the copy."""
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert preprocess.resize_to_input(image) is image
    assert np.array_equal(ResizeLongestSide(1024).apply_image(image), image)


def test_lowres_target_follows_the_padded_frame():
    """A 400x800 mask whose bottom half is water: 1024x512 input, 256x128 valid low-res area."""
    mask = np.zeros((400, 800), np.uint8)
    mask[200:] = 1
    target = preprocess.lowres_target(mask)
    assert target.shape == (256, 256)
    assert target[:64].sum() == 0  # top half of the valid area, rows 0..63
    assert target[64:128].all()  # bottom half of the image, rows 64..127, all columns
    assert target[128:].sum() == 0  # padding below the image is never water


@pytest.mark.parametrize("shape", [(1080, 1920), (333, 517), (2000, 77), (256, 256)])
def test_lowres_target_resizes_as_sam_resizes_an_image(shape):
    """One grey channel resized gives the values ResizeLongestSide gives each RGB channel
    (it once resized the mask as a 3-channel image: 3x the work, the same target)."""
    rng = np.random.default_rng(sum(shape))
    mask = (rng.random((shape[0] // 8 + 1, shape[1] // 8 + 1)) > 0.5).astype(np.uint8)
    mask = np.kron(mask, np.ones((8, 8), np.uint8))[: shape[0], : shape[1]]  # blobs and edges
    mask[rng.random(shape) > 0.97] ^= 1  # and lone pixels
    as_image = preprocess.resize_to_input(np.repeat(mask[..., None] * 255, 3, axis=2))
    padded = np.zeros((1024, 1024), np.float32)
    padded[: as_image.shape[0], : as_image.shape[1]] = as_image[..., 0] / 255.0
    area = padded.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    assert np.array_equal(preprocess.lowres_target(mask), (area >= 0.5).astype(np.uint8))


def lowres_as_float(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The target as every cache so far made it (float32 mean of values/255 per 4x4 block),
    and the blocks at exactly half whose float mean is not exactly one half."""
    h, w = preprocess.input_size(mask.shape)
    grey = Image.fromarray(mask * 255, mode="L").resize((w, h), Image.BILINEAR)
    padded = np.zeros((1024, 1024), np.float32)
    padded[:h, :w] = np.asarray(grey) / 255.0
    area = padded.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    sums = np.zeros((1024, 1024), np.int64)
    sums[:h, :w] = np.asarray(grey)
    ties = sums.reshape(256, 4, 256, 4).sum(axis=(1, 3)) == 8 * 255
    return (area >= 0.5).astype(np.uint8), ties & (area != 0.5)


def test_lowres_target_decides_blocks_at_half_as_caches_always_did():
    """Integer sums, with the blocks at exactly half decided by the float mean as before:
    the same targets on masks full of such blocks, rounding-decided ones included."""
    rng = np.random.default_rng(7)
    rounding_decided = 0
    for index in range(120):
        height, width = int(rng.integers(20, 1400)), int(rng.integers(20, 1400))
        if index % 3 == 0:  # native size, edges on even rows and columns: blocks at half
            height, width = 1024, int(rng.choice([512, 768, 1024]))
            mask = np.zeros((height, width), np.uint8)
            mask[2 * int(rng.integers(0, height // 2)) :] = 1
            mask[:, : 2 * int(rng.integers(0, width // 2))] ^= 1
        elif index % 3 == 1:  # lone pixels
            mask = (rng.random((height, width)) > 0.5).astype(np.uint8)
        else:  # blobs
            blobs = rng.random((height // 8 + 1, width // 8 + 1)) > 0.5
            mask = blobs.repeat(8, 0).repeat(8, 1)[:height, :width].astype(np.uint8)
        expected, decided = lowres_as_float(mask)
        rounding_decided += int(decided.sum())
        assert np.array_equal(preprocess.lowres_target(mask), expected), (index, mask.shape)
    assert rounding_decided > 20  # the cases the float rounding decides were there


def test_valid_lowres_rounds_up():
    assert preprocess.valid_lowres((512, 1024)) == (128, 256)
    assert preprocess.valid_lowres((683, 1024)) == (171, 256)
