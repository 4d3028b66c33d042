"""Batches through the encoder that fit the device: sizes from free memory, halving on
out-of-memory, and streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from floodcache.sam import batch_encoder, encoder, preprocess
from floodcache.sam.encoder import relative_error
from floodcache.sam.model import load_sam

GIB = 2**30


@pytest.mark.parametrize("attention", ["mask", "folded"])
def test_batch_size_comes_from_free_memory(monkeypatch, attention):
    cuda = torch.device("cuda")
    per_view = batch_encoder.view_memory("vit_b", "fp16", True, attention)
    monkeypatch.setattr(batch_encoder, "free_memory", lambda device: int(7.6 * GIB))  # 8 GB laptop
    laptop = batch_encoder.pick_batch_size(cuda, "vit_b", "fp16", attention=attention)
    assert 1 <= laptop and laptop * per_view <= 6 * GIB  # the goal: peak <= 6 GB
    monkeypatch.setattr(batch_encoder, "free_memory", lambda device: 139 * GIB)  # a 141 GB card
    chosen = batch_encoder.pick_batch_size(cuda, "vit_b", "fp16", attention=attention)
    assert chosen == batch_encoder.MAX_BATCH
    monkeypatch.setattr(batch_encoder, "free_memory", lambda device: GIB // 4)
    assert batch_encoder.pick_batch_size(cuda, "vit_h", "fp32", fast=False) == 1  # never 0


def test_view_memory_ranks_the_paths():
    """SAM's attention in fp32 needs the most, the fast path in fp16 the least."""
    need = batch_encoder.view_memory
    assert need("vit_b", "fp32", fast=False) > need("vit_b", "fp32", fast=True)
    assert need("vit_b", "fp32", fast=True) > need("vit_b", "fp16", fast=True)
    assert 0 < need("vit_tiny", "fp32", fast=True) < need("vit_b", "fp32", fast=True)
    windowed = need("vit_tiny", "fp32", fast=True) - 24 * 64 * 64 * 64 * 4  # less activations
    assert windowed == 2 * 4 * 25 * 14**4 * 2  # 2 heads, fp32 counted twice, 25 windows
    # Folded: no T x T term; vit_b's global blocks hold 12 heads x 4096 x (64 + 2 x 64) twice.
    folded = need("vit_b", "fp16", True, "folded") - 24 * 64 * 64 * 768 * 4
    assert folded == 12 * 4096 * 192 * 2 * 2 * 2
    assert need("vit_b", "fp16", True, "folded") < need("vit_b", "fp16", True, "mask") / 2


@pytest.fixture()
def out_of_memory_above(monkeypatch):
    """encoder.encode raising CUDA's OOM for more than `limit` views; records batch sizes."""
    calls: list[int] = []
    real_encode = encoder.encode

    def install(limit: int) -> list[int]:
        def encode(sam, resized, *args, **kwargs):
            calls.append(len(resized))
            if len(resized) > limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 6 GiB")
            return real_encode(sam, resized, *args, **kwargs)

        monkeypatch.setattr(encoder, "encode", encode)
        return calls

    return install


def test_out_of_memory_halves_the_batch_and_goes_on(tiny_checkpoint, out_of_memory_above):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(0)
    resized = [
        preprocess.resize_to_input(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
        for _ in range(7)
    ]
    expected = encoder.encode(sam, resized, torch.device("cpu"))
    calls = out_of_memory_above(2)
    batches = batch_encoder.BatchEncoder(sam, torch.device("cpu"), "vit_tiny", batch_size=8)
    embeddings = batches(resized)
    assert calls[:3] == [7, 4, 2] and batches.batch_size == 2  # 8 -> 4 -> 2, then kept
    assert sum(c for c in calls if c <= 2) == 7  # every view encoded exactly once
    assert relative_error(embeddings, expected) < 1e-5
    calls.clear()
    batches(resized[:3])
    assert calls == [2, 1]  # the smaller size sticks


def test_out_of_memory_with_one_view_is_raised(tiny_checkpoint, out_of_memory_above):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    out_of_memory_above(0)
    image = [preprocess.resize_to_input(np.zeros((50, 50, 3), np.uint8))]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        batch_encoder.BatchEncoder(sam, torch.device("cpu"), "vit_tiny", batch_size=4)(image)


def test_stream_gives_every_batch_its_float16_embeddings(tiny_checkpoint):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(2)
    batches = [
        [
            {
                "resized": preprocess.resize_to_input(rng.integers(0, 255, (80, 100, 3), np.uint8)),
                "i": i,
            }
        ]
        for i in range(3)
    ]
    expected = [encoder.encode(sam, [b[0]["resized"]], torch.device("cpu"))[0] for b in batches]
    streamed = list(
        batch_encoder.BatchEncoder(sam, torch.device("cpu"), "vit_tiny").stream(batches)
    )
    assert [batch[0]["i"] for batch, _ in streamed] == [0, 1, 2]
    for (batch, embeddings), reference in zip(streamed, expected, strict=True):
        assert "resized" not in batch[0] and embeddings.dtype == np.float16
        assert embeddings.shape == (1, 256, 64, 64)
        assert relative_error(torch.from_numpy(embeddings[0]).float(), reference) < 1e-3


def test_default_batch_size_on_a_cpu_is_small_and_fixed():
    cpu = torch.device("cpu")
    assert batch_encoder.default_batch_size(cpu, "vit_b", "fp32") == batch_encoder.CPU_BATCH
