"""The fast encoder computes segment-anything's encoder: same weights, same function."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Block, get_rel_pos

from floodcache.prompts import Prompt
from floodcache.sam import batch_encoder, decoder, encoder, fast_encoder, model, preprocess
from floodcache.sam.encoder import relative_error

CPU = torch.device("cpu")


def randomize_rel_pos(module: torch.nn.Module, seed: int = 0) -> None:
    """SAM builds relative-position tables as zeros; trained ones are not, so test with noise."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "rel_pos" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


@pytest.mark.parametrize("attention", fast_encoder.ATTENTIONS)
@pytest.mark.parametrize("window_size", [0, 14], ids=["global", "windowed"])
def test_fast_block_equals_sam_block(window_size, attention):
    """A block on ViT-B's 64x64 token grid and head width (64), global and windowed (padded),
    the relative-position term as a mask or folded into q and k."""
    torch.manual_seed(0)
    block = Block(256, 4, use_rel_pos=True, window_size=window_size, input_size=(64, 64))
    randomize_rel_pos(block.eval())
    tokens = torch.randn(1, 64, 64, 256)
    with torch.no_grad():
        ours = fast_encoder.fast_block(block, tokens, attention)
        assert relative_error(ours, block(tokens)) < 1e-5
        if window_size == 0:  # the attention alone, over all 4096 tokens
            theirs = block.attn(tokens)
            ours = fast_encoder.sdpa_attention(block.attn, tokens, attention)
            assert relative_error(ours, theirs) < 1e-5


def test_rel_pos_table_equals_get_rel_pos():
    for size, length in [(64, 127), (14, 27), (20, 27)]:  # the last one interpolates
        table = torch.randn(length, 8)
        assert torch.equal(fast_encoder.rel_pos_table(size, table), get_rel_pos(size, size, table))


def small_encoder_sam(seed: int = 0):
    """vit_tiny with a global-attention block in its second place (vit_tiny has none)."""
    torch.manual_seed(seed)
    sam = model.build_sam("vit_tiny")
    sam.image_encoder = ImageEncoderViT(
        depth=2,
        embed_dim=64,
        num_heads=2,
        out_chans=256,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=(1,),
        window_size=14,
    ).eval()
    randomize_rel_pos(sam.image_encoder, seed)
    return sam


def box_mask_iou(sam, embeddings: torch.Tensor, reference: torch.Tensor) -> float:
    """IoU, over all views together, of the masks SAM decodes from one box prompt per view
    with `embeddings` and with `reference`."""
    boxes = [Prompt(None, None, [100, 100, 700, 600])] * len(embeddings)
    with torch.no_grad():
        ours, theirs = (
            decoder.decode(sam.prompt_encoder, sam.mask_decoder, e, boxes, False)[0] > 0
            for e in (embeddings, reference)
        )
    return float((ours & theirs).sum() / (ours | theirs).sum().clamp(min=1))


def views(count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    shapes = [(120, 200, 3), (300, 100, 3), (64, 64, 3)][:count]
    return [preprocess.resize_to_input(rng.integers(0, 255, s, dtype=np.uint8)) for s in shapes]


def test_fast_encode_equals_sam_encoder_with_global_attention():
    sam = small_encoder_sam()
    resized = views(3)
    reference = encoder.encode(sam, resized, CPU)
    fast = encoder.encode(sam, resized, CPU, fast=True)
    assert fast.shape == (3, 256, 64, 64)
    assert relative_error(fast, reference) < 1e-5


def test_attention_is_the_devices_unless_chosen():
    sam = small_encoder_sam()
    resized = views(2)
    reference = encoder.encode(sam, resized, CPU)
    assert fast_encoder.fast_image_encoder(sam.image_encoder, False).attention == "mask"
    assert fast_encoder.default_attention(torch.device("cuda")) == "folded"
    folded = fast_encoder.fast_image_encoder(sam.image_encoder, False, "folded")
    assert folded.attention == "folded"
    fast = encoder.encode(sam, resized, CPU, fast=True, attention="folded")
    assert relative_error(fast, reference) < 1e-5
    chosen = batch_encoder.BatchEncoder(sam, CPU, "vit_tiny", attention="folded")
    assert chosen.attention == "folded"
    with pytest.raises(ValueError, match="unknown attention 'flash'"):
        fast_encoder.fast_image_encoder(sam.image_encoder, False, "flash")


def test_fast_vit_tiny_equals_sam_predictor(tiny_checkpoint):
    sam = model.load_sam("vit_tiny", tiny_checkpoint)
    randomize_rel_pos(sam.image_encoder)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (150, 220, 3), dtype=np.uint8) for _ in range(2)]
    fast = encoder.encode(sam, [preprocess.resize_to_input(im) for im in images], CPU, fast=True)
    predictor = SamPredictor(sam)
    for image, ours in zip(images, fast, strict=True):
        predictor.set_image(image)
        assert relative_error(ours, predictor.features[0]) < 1e-5


def test_fast_bf16_stays_close_and_masks_agree():
    """Low precision on the fast path: small embedding error, the same decoded masks."""
    sam = small_encoder_sam()
    resized = views(2)
    reference = encoder.encode(sam, resized, CPU)
    low = encoder.encode(sam, resized, CPU, "bf16", fast=True)
    assert relative_error(low, reference) < 2e-2
    iou = box_mask_iou(sam, low, reference)
    assert iou > 0.95


def test_compile_failure_falls_back_to_the_same_maths(monkeypatch, caplog):
    def broken_compile(module, **options):
        def compiled(*args):
            raise RuntimeError("Triton is not available")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    sam = small_encoder_sam()
    pixels = torch.randn(1, 3, 1024, 1024)
    for attention in fast_encoder.ATTENTIONS:
        forward = fast_encoder.CompiledForward(sam.image_encoder, True, attention)
        assert forward.attention == attention
        with caplog.at_level(logging.WARNING), torch.no_grad():
            out = forward(pixels)
            eager = fast_encoder.FastImageEncoder(sam.image_encoder, attention)
            assert torch.equal(out, eager(pixels))
        assert forward.compiled is None and "torch.compile failed" in caplog.text
        assert forward.attention == attention


def test_a_failing_folded_compile_falls_back_to_the_compiled_mask(monkeypatch, caplog):
    def compile_without_folded(module, **options):
        def compiled(*args):
            if module.attention == "folded":
                raise RuntimeError("no kernel for these head widths")
            return module(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", compile_without_folded)
    sam = small_encoder_sam()
    pixels = torch.randn(1, 3, 1024, 1024)
    forward = fast_encoder.CompiledForward(sam.image_encoder, True, "folded")
    with caplog.at_level(logging.WARNING), torch.no_grad():
        out = forward(pixels)
        assert torch.equal(out, fast_encoder.FastImageEncoder(sam.image_encoder)(pixels))
    assert forward.compiled is not None and forward.attention == "mask"
    assert "failed with the folded attention" in caplog.text
    assert "going on with the compiled mask" in caplog.text


def test_out_of_memory_in_compiled_code_is_not_swallowed(monkeypatch):
    """A CUDA OOM wrapped by the compiler still reaches the caller as OOM (to halve the batch)."""

    def oom_compile(module, **options):
        def compiled(*args):
            try:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            except torch.cuda.OutOfMemoryError as err:
                raise RuntimeError("backend compiler failed") from err

        return compiled

    monkeypatch.setattr(torch, "compile", oom_compile)
    forward = fast_encoder.CompiledForward(small_encoder_sam().image_encoder, compile=True)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        forward(torch.randn(1, 3, 1024, 1024))
    assert forward.compiled is not None  # memory, not the compiler: keep compiling


def test_compile_only_on_cuda_for_runs_where_it_pays_unless_told():
    cuda, enough = torch.device("cuda"), fast_encoder.COMPILE_MIN_VIEWS
    assert not fast_encoder.compile_wanted(CPU) and not fast_encoder.compile_wanted(CPU, enough)
    assert fast_encoder.compile_wanted(cuda, enough) and fast_encoder.compile_wanted(cuda)
    assert not fast_encoder.compile_wanted(cuda, 1160)  # 290 images x 4 views: not worth it
    sam = small_encoder_sam()
    assert batch_encoder.BatchEncoder(sam, CPU, "vit_tiny", views=10, compile=True).compile
    assert not batch_encoder.BatchEncoder(sam, CPU, "vit_tiny", fast=False, compile=True).compile


cuda_only = pytest.mark.cuda


@cuda_only
@pytest.mark.parametrize("attention", fast_encoder.ATTENTIONS)
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_cuda_fast_fp16_vit_b_stays_within_the_goal(compile, attention):
    """The bar on a GPU: relative error < 2e-3 against fp32, masks at IoU >= 0.99."""
    cuda = torch.device("cuda")
    torch.manual_seed(0)
    sam = model.build_sam("vit_b")
    randomize_rel_pos(sam.image_encoder)
    sam.to(cuda)
    resized = views(3)
    reference = encoder.encode(sam, resized, cuda)
    fast = encoder.encode(sam, resized, cuda, "fp16", True, compile, attention=attention)
    forward = fast_encoder.fast_image_encoder(sam.image_encoder, compile, attention)
    assert forward.attention == attention
    assert relative_error(fast, reference) < 2e-3
    assert box_mask_iou(sam, fast, reference) >= 0.99


@cuda_only
def test_cuda_stream_returns_each_batch_once_in_order():
    cuda = torch.device("cuda")
    sam = small_encoder_sam().to(cuda)
    batches = [[{"resized": image, "i": i}] for i, image in enumerate(views(3))]
    expected = [encoder.encode(sam, [b[0]["resized"]], cuda)[0].cpu() for b in batches]
    streamed = list(batch_encoder.BatchEncoder(sam, cuda, "vit_tiny", views=3).stream(batches))
    assert [batch[0]["i"] for batch, _ in streamed] == [0, 1, 2]
    for (_, embeddings), reference in zip(streamed, expected, strict=True):
        assert relative_error(torch.from_numpy(embeddings[0]).float(), reference) < 1e-3


@cuda_only
def test_cuda_stream_waits_for_the_gpu_without_burning_a_core(monkeypatch):
    """While it waits for the GPU, the streaming thread sleeps: its CPU time in those waits is
    a small part of their wall time (a spinning wait would make them equal), leaving the
    cores to the readers. Timed inside the waits alone: the whole loop's CPU also counts
    launching the kernels (most of the wall time for eager batches), which is work, not
    waiting."""
    waits = []

    class TimedEvent(torch.cuda.Event):
        def synchronize(self) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            super().synchronize()
            waits.append((time.perf_counter() - wall, time.thread_time() - cpu))

    monkeypatch.setattr(torch.cuda, "Event", TimedEvent)
    cuda = torch.device("cuda")
    sam = model.build_sam("vit_b").to(cuda)
    images = views(2) * 16
    batches = [[{"resized": image} for image in images] for _ in range(4)]
    list(batch_encoder.BatchEncoder(sam, cuda, "vit_b", "fp16", views=128).stream(batches))
    wall, cpu = (sum(times) for times in zip(*waits, strict=True))
    assert len(waits) == 4 and wall > 0.05, waits  # it did wait for the GPU
    assert cpu < 0.2 * wall, waits


@cuda_only
def test_cuda_defaults_fit_an_8_gb_laptop_gpu():
    """With the ~7.5 GiB an 8 GB card leaves free, the default batch of ViT-B fp16 (the
    `auto` precision on a GPU) runs without running out, and peaks at <= 6 GB."""
    from floodcache.bench.table import PeakMemory, hold_gpu_memory

    cuda = torch.device("cuda")
    with hold_gpu_memory(cuda, 7.5):
        sam = model.build_sam("vit_b").to(cuda)
        size = batch_encoder.default_batch_size(cuda, "vit_b", "fp16")
        batches = batch_encoder.BatchEncoder(sam, cuda, "vit_b", "fp16", batch_size=size, views=64)
        with PeakMemory(cuda) as peak:
            embeddings = batches(views(2) * size)
        assert embeddings.shape[0] == 2 * size and batches.batch_size == size  # no OOM halving
        assert 2 <= size and peak.megabytes() <= 6 * 1000**3 / 2**20
        del sam, batches, embeddings
