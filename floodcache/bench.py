"""`bench`: the usual SAM fine-tuning workflow against floodcache's, in one process, same data.

Stages, each timed on the same views (views/s, peak memory, ratio to the reference):

    reference SamPredictor   SamPredictor.set_image, fp32, one image at a time
    reference train step     that encoder forward plus one decoder training step on the view
                             (forward, BCE + Dice, backward, Adam): fine-tuning that runs the
                             encoder at every step
    encoder ... P            the image encoder alone, batched, in each precision P, with SAM's
                             attention and with the fast path (`fast_encoder`; compiled on
                             CUDA); relative error and decoded-mask IoU against the fp32
                             reference
    embed (end to end)       the `embed` command: audit, reader processes, encoder, cache
    train from cache         floodcache.train's own step on the cached embeddings

then the cache's bytes per view, write and read times, with and without compression, and
embed's writing side alone, in line and in the background (`bench_io`).
Speed does not depend on the weights: without a checkpoint SAM has random weights, and errors
and IoUs then describe an untrained model (the output says so).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from segment_anything import SamPredictor

from floodcache import bench_io, data, encoder
from floodcache import decoder as sam_decoder
from floodcache.cache import Cache
from floodcache.embed import EmbedConfig, pending_batches, plan_embed, run_embed
from floodcache.fast_encoder import ATTENTIONS, attention_kind, compile_wanted, fast_image_encoder
from floodcache.prompts import PROMPTS, Prompt, PromptOptions, make_prompt
from floodcache.readers import ReaderTimes, read_batches
from floodcache.train import DecoderTrainer, TrainConfig, Views, losses, lowres_prompt
from floodcache.views import make_view

log = logging.getLogger(__name__)
SCENE_SIZES = [(480, 640), (720, 1280), (600, 800), (1080, 1920), (768, 1024), (512, 512)]
ACCURACY_VIEWS = 16  # views whose embeddings are kept for errors and mask IoU
WRITING_BATCH = 32  # the writing stage's views per part: embed's batch on a large GPU
SKIPPABLE = {  # stages `--skip` can leave out, and what they are
    "eager-encoders": "the uncompiled encoder rows (on CUDA, where compiled ones run)",
    "mask-encoders": "the fast encoder with the mask attention where folded is the default",
    "compression": "the cache's size and I/O with compression",
    "writing": "embed's cache writing alone, in line and in the background",
}


@dataclass
class BenchConfig:
    """What `bench` measures, and where."""

    device: str | None = None  # default: cuda when available
    views: int = 8  # views per stage: 2 on a CPU (ViT-B ~14 s each), ~500 on a GPU
    # embed's views, if more: a longer run shows its steady rate better (the other stages
    # hold all their views in memory; embed reads its own from disk)
    embed_views: int | None = None
    model_type: str = "vit_b"
    checkpoint: Path | None = None  # default: random weights (speed does not depend on them)
    data_dir: Path | None = None  # real images (Kaggle layout) instead of generated scenes
    batch_size: int | None = None  # encoder views per call; default: from free memory
    train_batch_size: int | None = None  # decoder views per step; default 16 CPU, 64 GPU
    train_steps: int = 8  # timed decoder steps
    workers: int | None = None  # embed's reader processes (default: embed's, cores - 1)
    # embed's resize to SAM's input, "pil" (readers) or "torch" (device): embed runs for each
    resizes: tuple[str, ...] = ("pil",)
    reference_views: int = 64  # the reference runs on the first N views (it is slow)
    # On a GPU: hold all but this many GiB before starting, to act as a smaller card
    free_gpu_memory: float | None = None
    skip: frozenset[str] = frozenset()
    json_path: Path | None = None


@dataclass
class Row:
    stage: str
    precision: str
    batch: int
    views: int
    seconds: float
    peak_mb: float
    ratio: float = 0.0  # views/s over the reference's (the training step's for training)
    rel_error: float | None = None  # embeddings against the fp32 reference
    mask_iou: float | None = None  # box-prompted masks against the fp32 reference's
    note: str = ""

    @property
    def views_per_second(self) -> float:
        return self.views / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        err = f"{self.rel_error:8.1e}" if self.rel_error is not None else " " * 8
        iou = f"{self.mask_iou:6.3f}" if self.mask_iou is not None else " " * 6
        return (
            f"{self.stage:26s} {self.precision:5s} {self.batch:5d} {self.views_per_second:9.3f} "
            f"{self.peak_mb:8.0f} {self.ratio:8.2f} {err} {iou}  {self.note}"
        )


@dataclass
class Bench:
    """Everything `bench` measured: a table to print, JSON to keep."""

    device: str
    model_type: str
    weights: str
    views: int
    rows: list[Row] = field(default_factory=list)
    compression: list[dict] = field(default_factory=list)
    writing: dict = field(default_factory=dict)

    def add(self, *rows: Row) -> None:
        """Keep measured rows (the reference's two come first), with their ratio to the
        reference's views/s, and log each at once: a run cut short still shows them."""
        self.rows += rows
        reference, training = self.rows[0], self.rows[min(1, len(self.rows) - 1)]
        for row in rows:
            if row.stage != "embed readers alone":  # no encoder: nothing to compare
                base = training if row.stage.startswith("train") else reference
                row.ratio = row.views_per_second / base.views_per_second
            log.info("measured: %s", row.line())

    def table(self) -> str:
        lines = [
            f"bench: SAM {self.model_type} on {self.device}, {self.views} views, {self.weights}",
            f"{'stage':26s} {'prec':5s} {'batch':>5s} {'views/s':>9s} {'peak MB':>8s} "
            f"{'x ref':>8s} {'rel err':>8s} {'IoU':>6s}  note",
        ]
        lines += [row.line() for row in self.rows]
        lines.append("cache: float16 embeddings, one HDF5 chunk per view")
        for c in self.compression:
            lines.append(
                f"  {c['filter']:15s} {c['bytes_per_view'] / 2**20:6.3f} MiB/view "
                f"({c['saved']:5.1%} saved)  write {c['write_ms_per_view']:7.2f} ms/view  "
                f"read {c['read_ms_per_view']:7.2f} ms/view"
            )
        if w := self.writing:
            lines.append(
                f"cache writing, {w['views']} views in parts of {w['batch']}: in line "
                f"{w['in_line_ms_per_view']:.2f} ms/view; writer processes and assembler "
                f"{w['background_ms_per_view']:.2f} ms/view ({w['speedup']:.2f}x), "
                f"main process CPU {w['main_cpu_ms_per_view']:.2f} ms/view"
            )
        return "\n".join(lines)

    def to_json(self) -> dict:
        rows = [asdict(r) | {"views_per_second": r.views_per_second} for r in self.rows]
        fields = {k: v for k, v in asdict(self).items() if k != "rows"}
        return fields | {"torch": torch.__version__, "rows": rows}


class PeakMemory:
    """Peak memory of one stage: CUDA's max_memory_allocated, else this process's peak RSS.

    On Linux the RSS peak is reset per stage (/proc/self/clear_refs); elsewhere it is the peak
    since the process started (resource.getrusage).
    """

    held = 0  # bytes `hold_gpu_memory` keeps allocated: not the stage's, not counted

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def megabytes(self) -> float:
        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) - self.held) / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class View:
    """One view of the benchmark's data, made as `embed` makes it."""

    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray  # HxW uint8 {0,1}
    resized: np.ndarray  # hxwx3 uint8, longest side 1024
    box: Prompt  # the water's box in the 1024 input frame (the whole image when dry)


def run_bench(config: BenchConfig) -> Bench:
    """Measure every stage on the same views; return the results (and write JSON if asked)."""
    device = encoder.pick_device(config.device)
    with hold_gpu_memory(device, config.free_gpu_memory) as card:
        sam, sha = encoder.load_or_random_sam(
            config.model_type, config.checkpoint, config.checkpoint is None
        )
        weights = "RANDOM WEIGHTS (speed only)" if sha == "random-weights" else f"checkpoint {sha}"
        sam.to(device).eval()
        with tempfile.TemporaryDirectory(prefix="floodcache-bench-") as tmp:
            data_dir, augment = _dataset(config, Path(tmp))
            views = _views(data_dir, augment, config.views)
            bench = Bench(f"{device}{card}", config.model_type, weights, len(views))
            reference, ref_train, features = _reference(
                sam, views[: config.reference_views], device
            )
            bench.add(reference, ref_train)
            _encoders(bench, sam, views, features, device, config)
            cache = Path(tmp) / "bench.h5"
            for resize in config.resizes:
                bench.add(*_embed(config, data_dir, augment, cache, device, resize))
            bench.add(*[_train(config, cache, device, p) for p in ("fp32", "bf16")])
            if "compression" not in config.skip:
                bench.compression = bench_io.compression(cache, Path(tmp) / "compression.h5")
            if "writing" not in config.skip:
                bench.writing = bench_io.writing(cache, Path(tmp), WRITING_BATCH)
    _compare_embed(bench, device)
    if config.json_path:
        Path(config.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json_path).write_text(json.dumps(bench.to_json(), indent=1))
    return bench


@contextmanager
def hold_gpu_memory(device: torch.device, free_gib: float | None) -> Iterator[str]:
    """Allocate all of a GPU's free memory but `free_gib` GiB, so that the run inside sees a
    smaller card (an 8 GB laptop GPU has ~7.5 GiB free): batch sizes come from that, and
    running out of it is a real out-of-memory error. Yields words for the table's title."""
    if free_gib is None or device.type != "cuda":
        yield ""
        return
    torch.cuda.empty_cache()  # memory cached from earlier work would count as free
    free = torch.cuda.mem_get_info(device)[0]
    keep = int(free_gib * 2**30)
    if free <= keep:
        yield f" ({free / 2**30:.1f} GiB free, less than the {free_gib:g} GiB asked)"
        return
    held = torch.empty(free - keep, dtype=torch.uint8, device=device)
    PeakMemory.held = held.numel()
    try:
        yield f" (acting as a card with {free_gib:g} GiB free)"
    finally:
        PeakMemory.held = 0
        del held
        torch.cuda.empty_cache()


def _fast_precision(device: torch.device) -> str:
    """fp16 on CUDA; fp32 on a CPU, which has no fast fp16 matmul."""
    return "fp16" if device.type == "cuda" else "fp32"


def _dataset(config: BenchConfig, tmp: Path) -> tuple[Path, int]:
    """A data folder holding enough images for `views` views, and the augmentation to ask."""
    augment = min(3, config.views - 1)
    if config.data_dir:
        return Path(config.data_dir), augment
    rng = np.random.default_rng(0)
    root = tmp / "data"
    (root / "Image").mkdir(parents=True)
    (root / "Mask").mkdir()
    for index in range(math.ceil(_embed_views(config) / (augment + 1))):
        image, mask = synthetic_scene(rng, *SCENE_SIZES[index % len(SCENE_SIZES)])
        cv2.imwrite(str(root / "Image" / f"{index}.jpg"), image[..., ::-1])
        cv2.imwrite(str(root / "Mask" / f"{index}.png"), mask * 255)
    return root, augment


def _embed_views(config: BenchConfig) -> int:
    return max(config.views, config.embed_views or 0)


def synthetic_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, ...]:
    """A flood-like photo (HxWx3 uint8 RGB), water below a wavy line, and its HxW {0,1} mask."""
    rows, cols = np.mgrid[:height, :width]
    level = height * rng.uniform(0.35, 0.65) + height * 0.08 * np.sin(cols / width * 6.28)
    water = rows > level
    image = np.where(water[..., None], rng.integers(90, 150, 3), rng.integers(60, 200, 3))
    image = image + rng.integers(0, 25, (height, width, 1))
    return np.clip(image, 0, 255).astype(np.uint8), water.astype(np.uint8)


def _views(data_dir: Path, augment: int, count: int) -> list[View]:
    """The first `count` views `embed` plans (view 0 then augmented ones, image by image)."""
    views: list[View] = []
    for pair in data.find_pairs(data_dir)[0]:
        image, mask = data.load_pair(pair)
        for index in range(augment + 1):
            view_image, view_mask = make_view(image, mask, 0, pair.image_id, index)
            resized = encoder.resize_to_input(view_image)
            (h, w), (new_h, new_w) = view_image.shape[:2], resized.shape[:2]
            box = make_prompt(PROMPTS["box"], view_mask, 0, pair.image_id, index, 0)
            whole = Prompt(None, None, [0, 0, new_w, new_h])  # a view with no water
            box = box.scaled(new_w / w, new_h / h) if box else whole
            views.append(View(view_image, view_mask, resized, box))
            if len(views) == count:
                return views
    return views


def _timed(device: torch.device, run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def _reference(sam, views: list[View], device: torch.device) -> tuple[Row, Row, torch.Tensor]:
    """SamPredictor one image at a time, each followed by one decoder training step."""
    predictor = SamPredictor(sam)
    mask_decoder = copy.deepcopy(sam.mask_decoder).train()
    optimizer = torch.optim.Adam(mask_decoder.parameters(), lr=1e-4)
    encode_s = step_s = 0.0
    features = []
    with PeakMemory(device) as peak:
        for view in views:
            _, seconds = _timed(device, lambda v=view: predictor.set_image(v.image))
            encode_s += seconds
            if len(features) < ACCURACY_VIEWS:
                features.append(predictor.features.clone())
            step = _reference_step(sam, mask_decoder, optimizer, predictor.features, view)
            step_s += _timed(device, step)[1]
    n, mb = len(views), peak.megabytes()
    return (
        Row("reference SamPredictor", "fp32", 1, n, encode_s, mb, note="set_image per view"),
        Row("reference train step", "fp32", 1, n, encode_s + step_s, mb, note="encoder+decoder"),
        torch.cat(features),
    )


def _reference_step(sam, mask_decoder, optimizer, features: torch.Tensor, view: View):
    """One training step of SAM's mask decoder on one view, as fine-tuning scripts do it."""
    device = features.device
    target = torch.from_numpy(encoder.lowres_target(view.mask)).float().to(device)[None, None]
    rows, cols = sam_decoder.valid_lowres(view.resized.shape[:2])
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


def _encoders(bench: Bench, sam, views, reference: torch.Tensor, device, config) -> None:
    """The encoder alone, batched: SAM's attention, then the fast path, in each precision."""
    precisions = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    low, compiled = _fast_precision(device), compile_wanted(device)
    variants = []
    if not (compiled and "eager-encoders" in config.skip):
        variants = [(p, fast, False, "mask") for fast in (False, True) for p in precisions]
        if device.type == "cuda":  # the folded attention, CUDA's default (slower on a CPU)
            variants.append((low, True, False, "folded"))
    if compiled:  # each way of adding the relative-position term, compiled
        attentions = ATTENTIONS
        if "mask-encoders" in config.skip:
            attentions = [attention_kind(device.type == "cuda")]
        variants += [(low, True, True, attention) for attention in attentions]
    for precision, fast, compiled, attention in variants:
        with _compile(compiled), _attention(attention):
            bench.add(_encoder_row(sam, views, reference, device, config, precision, fast))


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """os.environ[name] = value inside, restored after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _compile(wanted: bool):
    """torch.compile on or off for the fast encoder (FLOODCACHE_COMPILE)."""
    return _environment("FLOODCACHE_COMPILE", "1" if wanted else "0")


def _attention(attention: str):
    """How the fast encoder adds the relative-position term (FLOODCACHE_ATTENTION)."""
    return _environment("FLOODCACHE_ATTENTION", attention)


def _fast_stage(attention: str, compiled: bool) -> str:
    """The table's name for the fast encoder with `attention` ("mask" goes unsaid)."""
    return "encoder fast" + f" {attention}" * (attention != "mask") + " compiled" * compiled


def _encoder_row(sam, views, reference, device, config, precision: str, fast: bool) -> Row:
    """One encoder variant over all views; the first ACCURACY_VIEWS results are kept."""
    batches = encoder.BatchEncoder(sam, device, config.model_type, precision, fast)
    batches.batch_size = min(config.batch_size or batches.batch_size, len(views))
    resized = [view.resized for view in views]
    forward = fast_image_encoder(sam.image_encoder, batches.compile) if fast else None
    note = ""
    if device.type == "cuda":  # untimed first call: cuDNN tuning, and compiling if compiled
        warmup = _timed(device, lambda: batches(resized[: batches.batch_size]))[1]
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
        seconds = _timed(device, run)[1]
    embeddings = torch.cat(kept)[: len(reference)]  # the views the reference encoded
    stage = "encoder SAM attention"
    if forward is not None:  # named after what ran: eager if compiling failed
        stage = _fast_stage(forward.attention, forward.compiled is not None)
        wanted = _fast_stage(attention_kind(device.type == "cuda"), batches.compile)
        if stage != wanted:
            note = f"{wanted} failed: ran {stage}"
    return Row(
        stage,
        precision,
        batches.batch_size,
        len(views),
        seconds,
        peak.megabytes(),
        rel_error=float((embeddings - reference).norm() / reference.norm()),
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


def _embed(config: BenchConfig, data_dir: Path, augment: int, cache: Path, device, resize: str):
    """`embed` end to end with `resize`, in this process (its reader processes are its own),
    with the settings a user gets by default; on a GPU compiled, as a long run is. Then its
    readers alone over the same views: the rate the GPU can be fed at. [embed row, readers']"""
    cache.unlink(missing_ok=True)  # each resize makes its own cache
    settings = EmbedConfig(
        cache=cache,
        data_dir=data_dir,
        checkpoint=config.checkpoint,
        random_weights=config.checkpoint is None,
        model_type=config.model_type,
        augment=augment,
        fractions=(1.0, 0.0, 0.0),
        limit=math.ceil(_embed_views(config) / (augment + 1)),
        batch_size=config.batch_size,
        workers=config.workers,
        resize=resize,
        device=str(device),
        progress=False,
        command="python cli.py bench",
    )
    with _compile(compile_wanted(device)), PeakMemory(device) as peak:
        result = run_embed(settings)
    note = (
        f"{result.workers} readers, resize {settings.resize}; "
        f"{result.views_per_second:.3g} views/s over the whole run, "
        f"{result.warmup_seconds:.1f} s to the first batch (audit, model load, compiling), "
        f"{result.finalize_seconds:.1f} s finishing the cache after the last batch"
    )
    # After the first batch, as a long run goes on; a run of one batch has only the whole.
    steady = result.embedded > result.warmup_views
    embed = Row(
        "embed (after 1st batch)" if steady else "embed (whole run)",
        encoder.resolve_precision(settings.precision, device),
        result.batch_size,
        result.embedded - result.warmup_views if steady else result.embedded,
        result.seconds - result.warmup_seconds if steady else result.seconds,
        peak.megabytes(),
        note=note,
    )
    return [embed, _readers(settings, result.batch_size, result.workers)]


def _readers(settings: EmbedConfig, batch_size: int, workers: int) -> Row:
    """embed's reader processes alone (read, decode, augment, resize, encode previews), with
    the CPU they and this process used: CPU seconds per wall second is the cores they had."""
    plan, pairs, _ = plan_embed(settings)
    before, start = os.times(), time.perf_counter()
    pending = pending_batches(plan, set(), batch_size)
    times = ReaderTimes()
    views, first = 0, None  # (views, time, reader times) once the first batch is read
    for batch in read_batches(pending, pairs, settings, workers, borrow=True, times=times):
        views += len(batch)
        if first is None:
            first = (views, time.perf_counter(), replace(times))
    end = time.perf_counter()
    seconds = end - start
    used = [after - earlier for after, earlier in zip(os.times(), before, strict=True)]
    readers_cpu = used[2] + used[3] if workers else used[0] + used[1]  # reaped children
    note = (
        f"{workers} reader processes, resize {settings.resize}, no encoder: the rate they can "
        f"feed it after the first batch, as embed's row ({views / seconds:.1f} views/s from "
        f"the readers' start); over the whole run {readers_cpu / views * 1000:.1f} ms of "
        f"reader CPU a view, {readers_cpu / seconds:.1f} cores busy, "
        f"{(used[0] + used[1]) / views * 1000:.1f} ms of this process's CPU a view"
    )
    counted, counted_seconds = views - first[0], end - first[1]
    if not counted:  # one batch: the whole run
        counted, counted_seconds = views, seconds
    elif workers:
        note += "; after the first batch " + (times - first[2]).line(workers, counted_seconds)
    return Row("embed readers alone", "-", batch_size, counted, counted_seconds, 0.0, note=note)


def _compare_embed(bench: Bench, device: torch.device) -> None:
    """Add to each embed row's note its rate as a share of the encoder alone, as embed ran."""
    compiled = compile_wanted(device)
    alone = _fast_stage(attention_kind(device.type == "cuda"), compiled)
    for embed in (r for r in bench.rows if r.stage.startswith("embed (")):
        same = [r for r in bench.rows if (r.stage, r.precision) == (alone, embed.precision)]
        if same:
            share = embed.views_per_second / same[0].views_per_second
            embed.note = f"{share:.0%} of {alone} {embed.precision}; {embed.note}"


def _train(config: BenchConfig, cache: Path, device: torch.device, precision: str) -> Row:
    """floodcache.train's step on cached embeddings: `box` prompts, batches of cycled views."""
    batch = config.train_batch_size or (64 if device.type == "cuda" else 16)
    strategy = PROMPTS["box"]
    with Cache.open(cache) as opened:
        views = Views(opened, "train", in_memory=True)
        options = PromptOptions(box_jitter=0.0)
        index = np.arange(batch) % len(views)
        prompts = [lowres_prompt(strategy, views, int(i), 0, 1, options) for i in index]
        index = index[[p is not None for p in prompts]]
        prompts = [p for p in prompts if p is not None]
        settings = TrainConfig(cache, cache.parent, device=str(device), precision=precision)
        trainer = DecoderTrainer(opened, settings)
        trainer.step(strategy, views, index, prompts, train=True)  # warm-up, untimed

        def run() -> None:
            for _ in range(config.train_steps):
                trainer.step(strategy, views, index, prompts, train=True)

        with PeakMemory(device) as peak:
            seconds = _timed(device, run)[1]
    return Row(
        "train from cache",
        precision,
        len(index),
        len(index) * config.train_steps,
        seconds,
        peak.megabytes(),
        note="DecoderTrainer.step, box prompts",
    )
