"""`bench`'s encoder stages, on views held in memory: the reference workflow (SamPredictor
one image at a time, and a decoder training step after each), then the image encoder alone,
batched, in each precision with SAM's attention and the fast path, with its relative error
and decoded-mask IoU against the reference."""

from __future__ import annotations

import copy
import functools
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor

from floodcache.bench.config import BenchConfig
from floodcache.bench.table import Bench, PeakMemory, Row, timed
from floodcache.data.pairs import find_pairs, load_pair
from floodcache.data.views import make_view
from floodcache.prompts import PROMPTS, Prompt, make_prompt
from floodcache.sam import decoder as sam_decoder
from floodcache.sam.batch_encoder import BatchEncoder
from floodcache.sam.encoder import relative_error
from floodcache.sam.fast_encoder import (
    ATTENTIONS,
    compile_wanted,
    default_attention,
    fast_image_encoder,
)
from floodcache.sam.modeling import Sam
from floodcache.sam.precision import NATIVE_BF16_FLAGS, cpu_flags, resolve_precision
from floodcache.sam.preprocess import lowres_target, resize_to_input, valid_lowres
from floodcache.train.trainer import losses

ACCURACY_VIEWS = 16  # views whose embeddings are kept for errors and mask IoU


@dataclass
class View:
    """One view of the benchmark's data, made as `embed` makes it."""

    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray  # HxW uint8 {0,1}
    resized: np.ndarray  # hxwx3 uint8, longest side 1024
    box: Prompt  # the water's box in the 1024 input frame (the whole image when dry)


def _fast_precision(device: torch.device) -> str:
    """fp16 on CUDA; fp32 on a CPU, which has no fast fp16 matmul."""
    return "fp16" if device.type == "cuda" else "fp32"


def cpu_precision_note(device: torch.device) -> str:
    """On a CPU, what `--precision auto` picks for the encoder here and why, so that the
    encoder rows fp32 against bf16 show whether that pick is the faster one; '' elsewhere."""
    if device.type != "cpu":
        return ""
    native = sorted(NATIVE_BF16_FLAGS & cpu_flags())
    picked = resolve_precision("auto", device)
    why = f"native bf16 ({', '.join(native)})" if native else "no native bf16 (bf16 emulated)"
    return (
        f"CPU with {why}: --precision auto picks {picked} for the encoder; "
        "the encoder rows fp32 and bf16 below show whether it is the faster one here"
    )


def bench_views(data_dir: Path, augment: int, count: int) -> list[View]:
    """The first `count` views `embed` plans (view 0 then augmented ones, image by image)."""
    views: list[View] = []
    for pair in find_pairs(data_dir)[0]:
        image, mask = load_pair(pair)
        for index in range(augment + 1):
            view_image, view_mask = make_view(image, mask, 0, pair.image_id, index)
            resized = resize_to_input(view_image)
            (h, w), (new_h, new_w) = view_image.shape[:2], resized.shape[:2]
            box = make_prompt(PROMPTS["box"], view_mask, 0, pair.image_id, index, 0)
            # the whole view: a view with no water
            whole = Prompt(None, None, np.array([0, 0, new_w, new_h], np.float32))
            box = box.scaled(new_w / w, new_h / h) if box else whole
            views.append(View(view_image, view_mask, resized, box))
            if len(views) == count:
                return views
    return views


def reference_stages(
    sam: Sam, views: list[View], device: torch.device
) -> tuple[Row, Row, torch.Tensor]:
    """SamPredictor one image at a time, each followed by one decoder training step (after
    one untimed view)."""
    predictor = SamPredictor(sam)
    mask_decoder = copy.deepcopy(sam.mask_decoder).train()
    optimizer = torch.optim.Adam(mask_decoder.parameters(), lr=1e-4)
    encode_s = step_s = 0.0
    features: list[torch.Tensor] = []
    # The first view once untimed, as each stage's first batch: on a GPU the first call pays
    # for CUDA's set-up (seconds), which a few reference views would take for its speed.
    predictor.set_image(views[0].image)
    _reference_step(sam, mask_decoder, optimizer, predictor.features, views[0])()
    with PeakMemory(device) as peak:
        for view in views:
            _, seconds = timed(device, functools.partial(predictor.set_image, view.image))
            encode_s += seconds
            if len(features) < ACCURACY_VIEWS:
                features.append(predictor.features.clone())
            step = _reference_step(sam, mask_decoder, optimizer, predictor.features, view)
            step_s += timed(device, step)[1]
    n, mb = len(views), peak.megabytes()
    return (
        Row("reference SamPredictor", "fp32", 1, n, encode_s, mb, note="set_image per view"),
        Row("reference train step", "fp32", 1, n, encode_s + step_s, mb, note="encoder+decoder"),
        torch.cat(features),
    )


def _reference_step(sam, mask_decoder, optimizer, features: torch.Tensor, view: View):
    """One training step of SAM's mask decoder on one view, as fine-tuning scripts do it."""
    device = features.device
    target = torch.from_numpy(lowres_target(view.mask)).float().to(device)[None, None]
    rows, cols = valid_lowres(view.resized.shape[:2])
    valid = torch.zeros_like(target)
    valid[..., :rows, :cols] = 1
    box = torch.tensor(view.box.box, device=device)[None]

    def step() -> None:
        with torch.no_grad():
            sparse, dense = sam.prompt_encoder(points=None, boxes=box, masks=None)
        logits, iou = mask_decoder(
            image_embeddings=features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        seg, iou_loss, _ = losses(logits, iou, target, valid)
        optimizer.zero_grad()
        (seg.mean() + iou_loss.mean()).backward()
        optimizer.step()

    return step


def encoders(
    bench: Bench,
    sam: Sam,
    views: list[View],
    reference: torch.Tensor,
    device: torch.device,
    config: BenchConfig,
) -> None:
    """The encoder alone, batched: SAM's attention, then the fast path, in each precision."""
    precisions = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    low, compiled = _fast_precision(device), compile_wanted(device)
    mask = "mask"
    variants: list[Variant] = []
    if not (compiled and "eager-encoders" in config.skip):
        variants = [Variant(p, fast, False, mask) for fast in (False, True) for p in precisions]
        if device.type == "cuda":  # the folded attention, CUDA's default (slower on a CPU)
            variants.append(Variant(low, True, False, "folded"))
    if compiled:  # each way of adding the relative-position term, compiled
        attentions: tuple[str, ...] = ATTENTIONS
        if "mask-encoders" in config.skip:
            attentions = (default_attention(device),)
        variants += [Variant(low, True, True, attention) for attention in attentions]
    for variant in variants:
        bench.add(_encoder_row(sam, views, reference, device, config, variant))


@dataclass(frozen=True)
class Variant:
    """One way of running the image encoder that the bench times."""

    precision: str
    fast: bool  # the fast encoder, else SAM's own attention
    compile: bool
    attention: str  # the fast encoder's relative-position term (a key of ATTENTIONS)


def fast_stage(attention: str, compiled: bool) -> str:
    """The table's name for the fast encoder with `attention` ("mask" goes unsaid)."""
    return "encoder fast" + f" {attention}" * (attention != "mask") + " compiled" * compiled


def _encoder_row(
    sam: Sam,
    views: list[View],
    reference: torch.Tensor,
    device: torch.device,
    config: BenchConfig,
    variant: Variant,
) -> Row:
    """One encoder variant over all views; the first ACCURACY_VIEWS results are kept."""
    precision, fast, compile, attention = astuple(variant)
    batches = BatchEncoder(
        sam,
        device,
        config.model_type,
        precision,
        fast,
        compile=compile,
        attention=attention,
    )
    batches.batch_size = min(config.batch_size or batches.batch_size, len(views))
    resized = [view.resized for view in views]
    forward = fast_image_encoder(sam.image_encoder, compile, attention) if fast else None
    note = ""
    if device.type == "cuda":  # untimed first call: cuDNN tuning, and compiling if compiled
        warmup = timed(device, lambda: batches(resized[: batches.batch_size]))[1]
        note = f"compile + first batch {warmup:.0f} s" if batches.compile else ""
    kept: list[torch.Tensor] = []

    def run() -> None:
        start = 0
        while start < len(resized):
            chunk = resized[start : start + batches.batch_size]
            embeddings = batches(chunk)
            if start < ACCURACY_VIEWS:
                kept.append(embeddings[: ACCURACY_VIEWS - start])
            start += len(chunk)

    with PeakMemory(device) as peak:
        seconds = timed(device, run)[1]
    embeddings = torch.cat(kept)[: len(reference)]  # the views the reference encoded
    stage = "encoder SAM attention"
    if forward is not None:  # named after what ran: eager if compiling failed
        stage = fast_stage(forward.attention, forward.compiled is not None)
        wanted = fast_stage(attention, batches.compile)
        if stage != wanted:
            note = f"{wanted} failed: ran {stage}"
    return Row(
        stage,
        precision,
        batches.batch_size,
        len(views),
        seconds,
        peak.megabytes(),
        rel_error=relative_error(embeddings, reference),
        mask_iou=_mask_iou(sam, views, embeddings, reference),
        note=note,
    )


@torch.no_grad()
def _mask_iou(sam, views: list[View], embeddings, reference) -> float:
    """Mean IoU of box-prompted masks decoded from `embeddings` and from `reference`."""
    boxes = [view.box for view in views[: len(embeddings)]]
    ious = []
    for start in range(0, len(boxes), 8):
        part = slice(start, start + 8)
        ours, theirs = (
            sam_decoder.decode(sam.prompt_encoder, sam.mask_decoder, e[part], boxes[part], False)[0]
            > sam.mask_threshold
            for e in (embeddings, reference)
        )
        inter = (ours & theirs).sum(dim=(1, 2, 3)).float()
        union = (ours | theirs).sum(dim=(1, 2, 3)).float()
        ious += torch.where(union > 0, inter / union.clamp(min=1), 1.0).tolist()
    return float(np.mean(ious))
