"""Batches of views through SAM's image encoder that fit the device: the batch size comes from
free memory, an out-of-memory error halves it and goes on, and on CUDA the next batch encodes
while the caller writes the last (`BatchEncoder.stream`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from floodcache.sam import encoder
from floodcache.sam.device_resize import lowres_targets
from floodcache.sam.fast_encoder import compile_wanted, default_attention, fast_image_encoder
from floodcache.sam.modeling import Sam
from floodcache.sam.precision import DTYPES
from floodcache.sam.preprocess import IMAGE_SIZE
from floodcache.settings import MODEL_TYPES
from floodcache.utils.memory import free_memory

log = logging.getLogger(__name__)

MAX_BATCH = 32  # more views per call buy no speed on the largest GPUs (docs/performance.md)
# On a CPU larger batches lose speed (their attention tensors outgrow the caches and fault
# in fresh pages), need more memory, and lose more to a crash.
CPU_BATCH = 2
MEMORY_FRACTION = 0.75  # of the free memory; an 8 GB laptop GPU then peaks under 6 GB


def view_memory(model_type: str, precision: str, fast: bool, attention: str = "mask") -> int:
    """Bytes one view adds to the encoder's peak memory: an estimate with headroom.

    Attention dominates. SAM's own attention holds float32 scores, the scores plus the
    relative-position term, and the softmax (three heads x T x T tensors, T = 4096 tokens in
    a global block); the fast path with the "mask" attention holds the relative-position mask
    once (counted twice, for a kernel that pads it); "folded" holds q and k widened by the
    term, T x (head width + H + W) per head each (counted twice, for the concatenation).
    Activations: ~24 T x width float32 tensors (residual, qkv, MLP).
    """
    spec = MODEL_TYPES[model_type]
    side = IMAGE_SIZE // 16
    windows = math.ceil(side / 14) ** 2  # 14x14-token windows cover the padded 70x70 grid
    global_attention = bool(spec.global_attn_indexes)
    pairs = side**4 if global_attention else windows * 14**4
    itemsize = 4 if DTYPES[precision] is None else 2
    if fast and attention == "folded":
        tokens, grid = (side**2, side) if global_attention else (windows * 14**2, 14)
        width = spec.embed_dim // spec.num_heads + 2 * grid
        scores = spec.num_heads * tokens * width * 2 * 2 * itemsize
    else:
        scores = spec.num_heads * pairs * (2 * itemsize if fast else 12)
    return scores + 24 * side * side * spec.embed_dim * 4


def pick_batch_size(
    device: torch.device,
    model_type: str,
    precision: str = "fp32",
    fast: bool = True,
    attention: str | None = None,
) -> int:
    """The most views per encoder call that fit MEMORY_FRACTION of the free memory (1..32),
    for the fast encoder's `attention` (default: the device's).

    Call it with the encoder already on `device`, so that its weights count as used.
    """
    attention = attention or default_attention(device)
    need = view_memory(model_type, precision, fast, attention)
    fits = int(MEMORY_FRACTION * free_memory(device) // need)
    return max(1, min(MAX_BATCH, fits))


def default_batch_size(device: torch.device, model_type: str, precision: str) -> int:
    """`embed`'s views per encoder call (and per cache part) when not told: what fits a GPU's
    free memory (`pick_batch_size`), CPU_BATCH on a CPU."""
    if device.type != "cuda":
        return CPU_BATCH
    return pick_batch_size(device, model_type, precision, fast=True)


class BatchEncoder:
    """Encodes views in batches that fit the device: sized from free memory, halved on OOM.

    Each call splits its views into batches of at most `batch_size` (default:
    `pick_batch_size`). When CUDA runs out of memory the batch size is halved and the same
    views go again, down to one view at a time; the smaller size is kept for later calls.
    `views`, the number the run will encode, decides whether compiling pays (`compile_wanted`)
    unless `compile` says; `attention` is the fast encoder's (default: the device's). With
    resize="torch" views come at their own size and are resized on the device.

    Ten parameters: after the model, its device and type, each is one way of encoding with
    its default (as `encoder.encode`), which embed, predict, the bench and the tests set one
    at a time.
    """

    def __init__(
        self,
        sam: Sam,
        device: torch.device,
        model_type: str,
        precision: str = "fp32",
        fast: bool = True,
        batch_size: int | None = None,
        views: int | None = None,
        resize: str = "pil",
        compile: bool | None = None,
        attention: str | None = None,
    ):
        self.sam, self.device, self.precision, self.fast = sam, device, precision, fast
        self.resize = resize
        self.compile = fast and (compile_wanted(device, views) if compile is None else compile)
        self.attention = attention or default_attention(device)
        sam.image_encoder.to(device)
        self.batch_size = batch_size or pick_batch_size(
            device, model_type, precision, fast, self.attention
        )
        self.largest = 0  # largest batch run so far: compiled code pads short ones up to it

    def __call__(self, resized: list[np.ndarray]) -> torch.Tensor:
        """Resized hxwx3 uint8 views -> Bx256x64x64 float32 embeddings on the device."""
        parts: list[torch.Tensor] = []
        start = 0
        while start < len(resized):
            views = resized[start : start + self.batch_size]
            try:
                parts.append(self._encode(views))
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size //= 2
                log.warning("out of GPU memory: going on with batches of %d", self.batch_size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += len(views)
        return torch.cat(parts)

    def _encode(self, views: list[np.ndarray]) -> torch.Tensor:
        padding = 0
        if self.compile and self._compiled_forward().compiled is not None:
            self.largest = min(max(self.largest, len(views)), self.batch_size)
            padding = self.largest - len(views)  # one compiled shape for the whole run
        views = views + [np.zeros((1, 1, 3), np.uint8)] * padding
        embeddings = encoder.encode(
            self.sam,
            views,
            self.device,
            self.precision,
            self.fast,
            self.compile,
            self.resize,
            self.attention,
        )
        return embeddings[: len(views) - padding]

    def _compiled_forward(self):
        return fast_image_encoder(self.sam.image_encoder, True, self.attention)

    def stream(
        self, batches: Iterable[list[dict]], memory: Callable[[int], np.ndarray] | None = None
    ) -> Iterator[tuple[list[dict], np.ndarray]]:
        """(batch, Bx256x64x64 float16 embeddings) for batches of view dicts.

        Takes each dict's "resized" image (hxwx3 uint8) out and encodes it; with resize="torch"
        its "image" (the view at its own size) and its "mask", from which the "lowres_mask"
        target is made on the device too. On CUDA the results come back one batch late: the
        next batch is already on the GPU while the caller writes the one it got, and results
        reach the host through pinned memory: the embeddings into `memory(views)`, where given
        (the part writer's, page-locked: `PartWriter.memory`).
        """
        cuda = self.device.type == "cuda"
        on_device = self.resize == "torch"
        waiting = None
        for batch in batches:
            pixels = [view.pop("image" if on_device else "resized") for view in batch]
            results = [self(pixels).half()]
            if on_device:
                results.append(lowres_targets([view.pop("mask") for view in batch], self.device))
            if not cuda:
                yield _arrived(batch, results, None)
                continue
            hosts = [torch.from_numpy(memory(len(batch)))] if memory else []
            hosts += [
                torch.empty(r.shape, dtype=r.dtype, pin_memory=True) for r in results[len(hosts) :]
            ]
            for host, result in zip(hosts, results, strict=True):
                host.copy_(result, non_blocking=True)
            # Waited on by sleeping, not spinning: a spinning wait burns a core for as long as
            # the GPU works, a core the reader processes need.
            copied = torch.cuda.Event(blocking=True)
            copied.record()
            if waiting is not None:
                yield _arrived(*waiting)
            waiting = (batch, hosts, copied)
        if waiting is not None:
            yield _arrived(*waiting)


def _arrived(batch: list[dict], hosts: list[torch.Tensor], copied) -> tuple[list[dict], np.ndarray]:
    """The batch with its embeddings once on the host (and its low-res targets, if made)."""
    if copied is not None:
        copied.synchronize()
    embeddings, *targets = (host.numpy() for host in hosts)
    for made in targets:
        for view, target in zip(batch, made, strict=True):
            view["lowres_mask"] = target
    return batch, embeddings
