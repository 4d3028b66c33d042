"""SAM building, checkpoint checks and SAM-exact preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from floodcache import encoder
from floodcache.download import CheckpointError
from floodcache.encoder import load_sam, relative_error


def test_load_sam_roundtrip(tiny_checkpoint):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, weights_only=True)
    for name, tensor in sam.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match="python cli.py download --model-type vit_b"):
        load_sam("vit_b", tmp_path / "nope.pth")


def test_truncated_checkpoint_is_refused(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_sam("vit_tiny", broken)


def test_non_sam_file_is_refused(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_sam("vit_tiny", other)


def test_wrong_model_type_names_the_right_one(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="--model-type vit_tiny"):
        load_sam("vit_b", tiny_checkpoint)


def test_no_checkpoint_looks_in_the_default_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOODCACHE_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python cli.py download --model-type vit_b"):
        encoder.load_or_random_sam("vit_b", None, random_weights=False)


def test_no_checkpoint_needs_explicit_random_weights(caplog):
    with pytest.raises(CheckpointError, match="--random-weights"):
        encoder.load_or_random_sam("vit_tiny", None, random_weights=False)
    _, sha = encoder.load_or_random_sam("vit_tiny", None, random_weights=True)
    assert sha == "random-weights"
    assert "RANDOM WEIGHTS" in caplog.text and "MEANINGLESS" in caplog.text


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (1024, 1024), (77, 2000)])
def test_input_size_matches_resize(shape):
    resized = encoder.resize_to_input(np.zeros((*shape, 3), np.uint8))
    assert encoder.input_size(shape) == resized.shape[:2]
    assert max(resized.shape[:2]) == 1024


@pytest.mark.parametrize("shape", [(1024, 700), (576, 1024), (1024, 1024)])
def test_an_image_at_sams_input_size_is_resized_to_itself(shape):
    """As SamPredictor's PIL resize makes it (a copy), without the copy."""
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert encoder.resize_to_input(image) is image
    assert np.array_equal(ResizeLongestSide(1024).apply_image(image), image)


def test_lowres_target_follows_the_padded_frame():
    """A 400x800 mask whose bottom half is water: 1024x512 input, 256x128 valid low-res area."""
    mask = np.zeros((400, 800), np.uint8)
    mask[200:] = 1
    target = encoder.lowres_target(mask)
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
    as_image = encoder.resize_to_input(np.repeat(mask[..., None] * 255, 3, axis=2))
    padded = np.zeros((1024, 1024), np.float32)
    padded[: as_image.shape[0], : as_image.shape[1]] = as_image[..., 0] / 255.0
    area = padded.reshape(256, 4, 256, 4).mean(axis=(1, 3))
    assert np.array_equal(encoder.lowres_target(mask), (area >= 0.5).astype(np.uint8))


def lowres_as_float(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The target as every cache so far made it (float32 mean of values/255 per 4x4 block),
    and the blocks at exactly half whose float mean is not exactly one half."""
    h, w = encoder.input_size(mask.shape)
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
        assert np.array_equal(encoder.lowres_target(mask), expected), (index, mask.shape)
    assert rounding_decided > 20  # the cases the float rounding decides were there


def test_batched_encode_matches_predictor_tiny(tiny_checkpoint):
    """Several sizes in one batch give each image's SamPredictor embedding (fp32)."""
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 255, shape, dtype=np.uint8)
        for shape in [(120, 200, 3), (300, 100, 3), (64, 64, 3)]
    ]
    batch = encoder.encode(sam, [encoder.resize_to_input(im) for im in images], torch.device("cpu"))
    predictor = SamPredictor(sam)
    for image, ours in zip(images, batch, strict=True):
        predictor.set_image(image)
        assert relative_error(ours, predictor.features[0]) < 1e-5


@pytest.mark.parametrize("precision,tolerance", [("bf16", 5e-2), ("fp16", 1e-2)])
def test_autocast_precisions_stay_close(tiny_checkpoint, precision, tolerance):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    image = [encoder.resize_to_input(np.full((100, 150, 3), 120, np.uint8))]
    reference = encoder.encode(sam, image, torch.device("cpu"))
    low = encoder.encode(sam, image, torch.device("cpu"), precision)
    assert low.dtype == torch.float32
    assert relative_error(low, reference) < tolerance


def test_auto_precision_is_fp16_on_a_gpu_and_fp32_elsewhere():
    assert encoder.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert encoder.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert encoder.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked: kept


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_asked_on_a_cpu_that_emulates_it_is_warned_about_once(fast, monkeypatch, caplog):
    monkeypatch.setattr(encoder, "cpu_has_fast_bf16", lambda: fast)
    encoder._warn_slow_bf16.cache_clear()
    for device, precision in [("cpu", "bf16"), ("cpu", "bf16"), ("cpu", "fp32"), ("cuda", "bf16")]:
        assert encoder.resolve_precision(precision, torch.device(device)) == precision
    assert encoder.resolve_precision("auto", torch.device("cpu")) == "fp32"
    warnings = [r.getMessage() for r in caplog.records if "without fast bf16" in r.getMessage()]
    assert len(warnings) == (0 if fast else 1) and all("--precision at auto" in w for w in warnings)


def test_a_cpu_without_avx_512_has_no_fast_bf16():
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT"):
        pytest.skip("an AVX-512 CPU: oneDNN's answer depends on its bf16 instructions")
    assert encoder.cpu_has_fast_bf16() is False


def test_relative_error_of_tensors_and_float16_arrays():
    reference = torch.tensor([3.0, 4.0])  # norm 5
    assert relative_error(reference, reference) == 0.0
    assert relative_error(torch.tensor([3.0, 5.0]), reference) == pytest.approx(0.2)
    cached = np.array([3.0, 5.0], np.float16)  # float16 sums would round: compared in float32
    assert relative_error(cached, reference.numpy()) == pytest.approx(0.2)
