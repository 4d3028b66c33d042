"""`--resize torch`: SAM's preprocessing with the resize on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

from floodcache.sam import batch_encoder, device_resize, encoder, model, preprocess
from floodcache.sam.encoder import relative_error
from floodcache.sam.model import load_sam

CPU = torch.device("cpu")


def test_staged_arrays_arrive_unchanged():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(5, 7, 3), (2, 3), (1,)]]
    arrays.append(np.asfortranarray(rng.integers(0, 256, (4, 6), dtype=np.uint8)))
    for sent, array in zip(device_resize.staged(arrays, CPU), arrays, strict=True):
        assert np.array_equal(sent.numpy(), array)


def test_device_resize_encodes_as_sam_predictor_set_torch_image(tiny_checkpoint):
    """Views at their own size, resized by encode(resize="torch"), give the embeddings of
    SamPredictor.set_torch_image fed by apply_image_torch's interpolation. (Not by
    apply_image_torch itself: segment-anything 1.0 takes its size from the batch and channel
    axes, so every image comes out 341x1024; the size here comes from H and W.)"""
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(150, 220, 3), (90, 60, 3)]]
    ours = encoder.encode(sam, images, CPU, resize="torch")
    predictor = SamPredictor(sam)
    for image, embedding in zip(images, ours, strict=True):
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        size = ResizeLongestSide.get_preprocess_shape(*image.shape[:2], 1024)
        resized = F.interpolate(pixels, size, mode="bilinear", align_corners=False, antialias=True)
        predictor.set_torch_image(resized, image.shape[:2])
        theirs = predictor.features[0]
        assert relative_error(embedding, theirs) < 1e-5


def test_a_view_at_sams_input_size_is_not_resized():
    """Augmented views come at SAM's input size: their pixels go through as they are, which
    is what the interpolation gives at that size too."""
    pixels = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 768, 1024)))
    pixels = pixels.to(torch.uint8)
    same = device_resize.resize_like_sam(pixels)
    assert same.dtype == torch.float32 and torch.equal(same, pixels.float())
    kw = {"mode": "bilinear", "align_corners": False, "antialias": True}
    interpolated = F.interpolate(pixels.float(), (768, 1024), **kw)
    assert float((interpolated - same).abs().max()) < 1e-3


def test_both_resizes_lay_a_batch_out_alike():
    """The device's batch has the strides of the readers' resized one: a compiled encoder
    would otherwise compile again for the other resize (its guards check strides)."""
    sam = model.build_sam("vit_tiny")
    image = np.random.default_rng(3).integers(0, 256, (150, 220, 3), dtype=np.uint8)
    readers = device_resize.batch_to_tensor(sam, [preprocess.resize_to_input(image)] * 2, CPU)
    on_device = device_resize.pixels_on_device(sam, [image] * 2, CPU)
    assert on_device.shape == readers.shape and on_device.stride() == readers.stride()
    assert on_device.is_contiguous(memory_format=torch.channels_last)


def test_views_of_one_size_are_resized_together_as_one_at_a_time():
    """The device resizes a batch's views group by group of one size: the same pixels and
    targets as resizing each view alone, in the batch's order."""
    sam = model.build_sam("vit_tiny")
    rng = np.random.default_rng(5)
    shapes = [(150, 220), (300, 120), (150, 220), (64, 64), (300, 120), (150, 220)]
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    masks = [blob_mask(shape, seed) for seed, shape in enumerate(shapes)]
    batch = device_resize.pixels_on_device(sam, images, CPU)
    targets = device_resize.lowres_targets(masks, CPU)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        alone = device_resize.pixels_on_device(sam, [image], CPU)[0]
        assert torch.equal(batch[i], alone)
        assert torch.equal(targets[i], device_resize.lowres_targets([mask], CPU)[0])
    groups = device_resize.same_size([torch.from_numpy(image) for image in images])
    assert [rows for rows, _ in groups] == [[0, 2, 5], [1, 4], [3]]


def blob_mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = (rng.random((shape[0] // 16 + 1, shape[1] // 16 + 1)) > 0.5).astype(np.uint8)
    return np.kron(cells, np.ones((16, 16), np.uint8))[: shape[0], : shape[1]]


@pytest.mark.parametrize("shape", [(400, 800), (1080, 1920), (333, 517), (700, 90)])
def test_device_targets_agree_with_the_readers_targets(shape):
    """The device's low-res target follows the same frame as the readers' (PIL) one: the
    water's place in the padded square; only edge cells may differ."""
    masks = [blob_mask(shape, seed) for seed in range(3)]
    made = device_resize.lowres_targets(masks, CPU).numpy()
    assert made.shape == (3, 256, 256) and made.dtype == np.uint8
    for mask, target in zip(masks, made, strict=True):
        reference = preprocess.lowres_target(mask)
        assert (target != reference).mean() < 0.01
        h, w = (-(-size // 4) for size in preprocess.input_size(shape))
        assert target[h:].sum() == 0 and target[:, w:].sum() == 0  # padding is never water


def test_device_target_of_a_half_flooded_image():
    """A 400x800 mask whose bottom half is water: rows 64..127 of the 256x128 valid area."""
    mask = np.zeros((400, 800), np.uint8)
    mask[200:] = 1
    target = device_resize.lowres_targets([mask], CPU)[0].numpy()
    assert target[:64].sum() == 0 and target[64:128].all() and target[128:].sum() == 0


@pytest.mark.cuda
def test_cuda_stream_resizes_on_the_gpu_as_on_the_cpu(tiny_checkpoint):
    """embed's streaming with --resize torch on CUDA (pinned copies, one batch late) gives the
    CPU's embeddings and low-res targets."""
    rng = np.random.default_rng(4)
    shapes = [(150, 220), (300, 120), (64, 64)]
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    masks = [blob_mask(shape, seed) for seed, shape in enumerate(shapes)]
    results = {}
    for device in [CPU, torch.device("cuda")]:
        sam = load_sam("vit_tiny", tiny_checkpoint)
        pairs = enumerate(zip(images, masks, strict=True))
        batches = [[{"image": image, "mask": mask, "n": n}] for n, (image, mask) in pairs]
        stream = batch_encoder.BatchEncoder(sam, device, "vit_tiny", views=3, resize="torch")
        results[device.type] = list(stream.stream(batches))
    for (cpu_batch, cpu_emb), (gpu_batch, gpu_emb) in zip(*results.values(), strict=True):
        assert cpu_batch[0]["n"] == gpu_batch[0]["n"]
        assert relative_error(gpu_emb, cpu_emb) < 1e-2
        assert (gpu_batch[0]["lowres_mask"] != cpu_batch[0]["lowres_mask"]).mean() < 0.005


def test_batch_to_tensor_is_sam_preprocess_whatever_the_staging_held(tiny_checkpoint, monkeypatch):
    """The staging buffer is not zeroed: padding full of stale bytes must still come out 0."""
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(4)
    resized = [
        preprocess.resize_to_input(rng.integers(0, 256, shape, np.uint8))
        for shape in [(120, 200, 3), (300, 100, 3), (64, 64, 3)]
    ]
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(255))
    batch = device_resize.batch_to_tensor(sam, resized, torch.device("cpu"))
    for image, ours in zip(resized, batch, strict=True):
        pixels = torch.as_tensor(image).permute(2, 0, 1).contiguous()[None]
        assert torch.equal(ours, sam.preprocess(pixels)[0])
