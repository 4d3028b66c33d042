"""`embed`: audited pairs -> augmented views -> SAM image encoder -> HDF5 cache.

Reading, augmenting and preprocessing run in reader processes (`readers`); the encoder runs in
batches on the GPU when there is one; writer processes write each finished batch as a
crash-safe part, so a killed run resumes where it stopped and ends with the same cache as an
uninterrupted one, and another process assembles the cache from the parts as they are
written (`part_writer`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from floodcache import batch_encoder, data, distributed, encoder
from floodcache.audit import AuditReport, audit_folder
from floodcache.cache import CacheError, sam_prompt_state
from floodcache.cache_writer import CacheWriter
from floodcache.choices import AUTO_PRECISION, RESIZE_METHODS
from floodcache.part_writer import Assembler, PartWriter
from floodcache.readers import ReaderTimes, default_workers, described, read_batches
from floodcache.views import (
    AUGMENTED_FROM,
    DEFAULT_FRACTIONS,
    ViewKey,
    assign_splits,
    augmentation_recipe,
    plan_views,
)

log = logging.getLogger(__name__)


@dataclass
class EmbedConfig:
    """Everything `embed` needs; the fields marked identity decide whether two caches differ."""

    cache: Path
    data_dir: Path | None = None
    images: Path | None = None  # alternative to data_dir: a folder of images ...
    masks: Path | None = None  # ... and one of masks, paired by file stem
    checkpoint: Path | None = None
    random_weights: bool = False  # explicit opt-in to an untrained SAM (smoke tests only)
    model_type: str = "vit_b"
    augment: int = 0  # extra augmented views per training image
    seed: int = 0  # split and augmentation seed
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train/val/test
    precision: str = AUTO_PRECISION  # fp16 on CUDA, fp32 on a CPU; cache: float16
    resize: str = "pil"  # to SAM's input: "pil" in the readers, "torch" on the device
    on_mismatch: str = "exclude"  # or "resize": resize a mask to its image
    limit: int | None = None  # embed only the first N usable images (quick trials)
    batch_size: int | None = None  # views per encoder call and cache part (default: from the
    # GPU's free memory, 2 on a CPU); does not change the result
    workers: int | None = None  # processes reading and augmenting images (default_workers)
    device: str | None = None  # default: cuda when available
    overwrite: bool = False  # replace an existing cache built differently
    progress: bool = True
    command: str = field(default_factory=lambda: " ".join(["python", *sys.argv]))


@dataclass
class EmbedResult:
    cache: Path
    views: int  # views in the cache
    embedded: int  # views encoded by this run (0 when the cache was complete already)
    seconds: float
    excluded: dict[str, list[str]]
    rank: int = 0  # under torchrun, which process this result is from
    # Until this process wrote its first batch (audit, model load, compiling, first reads) ...
    warmup_seconds: float = 0.0
    warmup_views: int = 0  # ... and the views in that batch
    finalize_seconds: float = 0.0  # finishing the cache once the last part is written
    batch_size: int = 0  # views per encoder call, as asked or picked for the device
    workers: int = 0  # reader processes, likewise

    @property
    def views_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    @property
    def steady_views_per_second(self) -> float:
        """The rate after the first batch: what a long run approaches (writes included)."""
        seconds = self.seconds - self.warmup_seconds
        return (self.embedded - self.warmup_views) / seconds if seconds > 0 else 0.0


def identity_of(config: EmbedConfig, checkpoint_sha256: str, plan: list[ViewKey]) -> dict:
    """What makes a cache what it is: two runs with equal identity give the same cache."""
    return {
        "model_type": config.model_type,
        "checkpoint_sha256": checkpoint_sha256,
        "augment": config.augment,
        "seed": config.seed,
        "fractions": list(config.fractions),
        "precision": config.precision,
        "on_mismatch": config.on_mismatch,
        "limit": config.limit,
        "augmentation_recipe": augmentation_recipe() if config.augment else None,
        "augmented_from": AUGMENTED_FROM if config.augment else None,
        "resize_method": RESIZE_METHODS[config.resize],
        "views": [[k.image_id, k.view, k.split] for k in plan],
    }


def run_embed(config: EmbedConfig, audit: AuditReport | None = None) -> EmbedResult:
    """Audit the data (unless given its `audit`, as `run` does), plan the views, encode what
    is not cached yet, and finish the cache.

    Under torchrun every process runs this: each encodes its share of the pending batches on
    its own device, and rank 0 checks the existing cache first and assembles it at the end.
    """
    start = time.perf_counter()
    group = distributed.join()
    try:
        device = encoder.pick_device(group.device(config.device))
        config = replace(config, precision=encoder.resolve_precision(config.precision, device))
        plan, pairs, excluded = plan_embed(config, audit)
        sam, checkpoint_sha = encoder.load_or_random_sam(
            config.model_type, config.checkpoint, config.random_weights
        )
        identity = identity_of(config, checkpoint_sha, plan)
        full_config = {"identity": identity, "run": _run_fields(config), "command": config.command}
        writer = _open_writer(group, config, identity, full_config)
        timing = Timing(start)
        with writer:
            embedded = 0
            if writer.already_complete:
                log.info("%s is complete already; nothing to do", config.cache)
            else:
                # The leader assembles the cache as parts are written, its own and earlier
                # runs'; the other processes' are added at the end.
                with Assembler(config.cache, plan) if group.leader else nullcontext() as assembler:
                    for part in writer.part_files() if assembler else []:
                        assembler.add(part)
                    embedded = _encode_pending(
                        sam, plan, pairs, config, writer, assembler, group, device, timing
                    )
                    group.barrier()  # every share is written
                    if assembler:
                        # For the report's timings: this run's wall time to the whole cache.
                        full_config["embed_seconds"] = round(time.perf_counter() - start, 1)
                        assembling = time.perf_counter()
                        state = sam_prompt_state(sam)  # read back by Cache.sam_state
                        steps = assembler.finish(writer.part_files(), identity, full_config, state)
                        timing.finalize = time.perf_counter() - assembling
                        log.info(
                            "finished the cache in %.2f s: %s; before that the assembler "
                            "added parts for %.1f s",
                            timing.finalize,
                            ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()),
                            assembler.busy,
                        )
                group.barrier()  # the cache is in place before anyone reports success
    finally:
        distributed.leave(group)
    seconds = time.perf_counter() - start
    return EmbedResult(
        config.cache,
        len(plan),
        embedded,
        seconds,
        excluded,
        group.rank,
        warmup_seconds=timing.warmup,
        warmup_views=timing.warmup_views,
        finalize_seconds=timing.finalize,
        batch_size=timing.batch_size,
        workers=timing.workers,
    )


@dataclass
class Timing:
    """Where an embed run's time went, and the sizes it chose, for EmbedResult."""

    start: float
    warmup: float = 0.0
    warmup_views: int = 0
    finalize: float = 0.0
    batch_size: int = 0
    workers: int = 0

    def first_batch(self, views: int, written: float) -> None:
        """Note the first batch, `views` views written at time.perf_counter() `written`."""
        if not self.warmup_views:
            self.warmup, self.warmup_views = written - self.start, views


def plan_embed(
    config: EmbedConfig, audit: AuditReport | None = None
) -> tuple[list[ViewKey], dict[str, data.Pair], dict]:
    """Audit the data (`audit` if made already) and plan every view: (plan, usable pairs by
    id, excluded pairs)."""
    asked = config.data_dir, config.images, config.masks, config.on_mismatch, config.progress
    report = audit if audit is not None else audit_folder(*asked)
    if report.excluded:
        log.warning(
            "excluding %d unusable pairs: %s",
            len(report.excluded),
            ", ".join(f"{k} ({'/'.join(v)})" for k, v in report.excluded.items()),
        )
    usable = report.usable[: config.limit] if config.limit else report.usable
    if not usable:
        raise ValueError("no usable image/mask pair found: run `python cli.py audit` to see why")
    pairs = {pair.image_id: pair for pair in usable}
    ids = list(pairs)
    splits = assign_splits(ids, config.seed, config.fractions, report.image_hashes)
    return plan_views(ids, splits, config.augment), pairs, report.excluded


def _open_writer(group, config: EmbedConfig, identity: dict, full_config: dict) -> CacheWriter:
    """The leader opens (locks, checks) the cache; the others attach once it said yes."""
    problem = None
    writer = None
    if group.leader:
        try:
            writer = CacheWriter(config.cache, identity, full_config, config.overwrite)
        except CacheError as err:
            problem = str(err)
    verdict = group.from_leader((problem, writer.already_complete if writer else False))
    if verdict[0] is not None:
        raise CacheError(verdict[0])
    return writer or CacheWriter.attach(config.cache, identity, already_complete=verdict[1])


def _run_fields(config: EmbedConfig) -> dict:
    fields = asdict(config)
    return json.loads(json.dumps(fields, default=str))


def pending_batches(plan: list[ViewKey], done: set, batch_size: int) -> list[list[ViewKey]]:
    """The plan cut into batches of `batch_size`, less the views already done.

    The cut is made on the whole plan, so a resumed or multi-process run encodes the same
    views together as a single uninterrupted run does.
    """
    batches = [plan[i : i + batch_size] for i in range(0, len(plan), batch_size)]
    pending = [[key for key in batch if (key.image_id, key.view) not in done] for batch in batches]
    return [batch for batch in pending if batch]


def _encode_pending(
    sam,
    plan,
    pairs,
    config: EmbedConfig,
    writer: CacheWriter,
    assembler: Assembler | None,
    group,
    device,
    timing: Timing,
) -> int:
    """Encode this process's share of the pending batches, one part per batch (each handed
    to `assembler`, if any, once written)."""
    done = writer.done()
    sam.image_encoder.to(device)  # before sizing batches: the weights count as used memory
    size = config.batch_size or batch_encoder.default_batch_size(
        device, config.model_type, config.precision
    )
    size = group.from_leader(size)  # every process cuts the plan the same way
    workers = default_workers() if config.workers is None else config.workers
    timing.batch_size, timing.workers = size, workers
    mine = group.share(pending_batches(plan, done, size))
    views = [key for batch in mine for key in batch]
    log.info(
        "encoding %d views on %s in %s, %d per batch, %s",
        len(views),
        device,
        config.precision,
        size,
        described(workers),
    )
    # One process shows the whole cache's progress; under torchrun each shows its own share.
    total, initial = (len(plan), len(done)) if group.world == 1 else (len(views), 0)
    bar = tqdm(
        total=total,
        initial=initial,
        unit="view",
        desc="embed" if group.world == 1 else f"embed rank {group.rank}",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    encoded = 0
    clock = [HostClock.now()]  # at the start, then once the first batch is written
    times = ReaderTimes()
    readers_then = [times]  # the readers' times then, likewise

    def written(count: int, finished: float) -> None:
        nonlocal encoded
        encoded += count
        timing.first_batch(count, finished)
        if len(clock) == 1:
            clock.append(HostClock.now())
            readers_then.append(replace(times))
        bar.update(count)

    # Fast attention (same maths), batches that fit the device's memory, halved on OOM; on
    # CUDA the next batch encodes while the writer processes write this one (`PartWriter`).
    views_encoder = batch_encoder.BatchEncoder(
        sam,
        device,
        config.model_type,
        config.precision,
        batch_size=size,
        views=len(views),
        resize=config.resize,
    )
    # The readers' pixels are borrowed: the encoder is done with a batch's when it asks for
    # the next but one (`stream`), and on CUDA they go to the GPU straight from the readers'
    # page-locked memory.
    cuda = device.type == "cuda"
    batches = read_batches(mine, pairs, config, workers, borrow=True, pin=cuda, times=times)
    readers = WaitClock(batches)
    try:
        with PartWriter(writer, written, assembler, pin=cuda) as parts:
            # On CUDA the embeddings come straight into the writers' memory
            submitted = 0
            for batch, embeddings in views_encoder.stream(readers, parts.memory if cuda else None):
                for view, embedding in zip(batch, embeddings, strict=True):
                    view["embeddings"] = embedding
                submitted += len(batch)
                parts.submit(batch, last=submitted == len(views))
    finally:
        bar.close()
    end = HostClock.now()
    log.info(
        "encoded %d views in %.1f s; waited %.1f s for the readers (%.1f s after the first "
        "batch, when %s) and %.1f s for the %d writer processes, which wrote for %.1f s; "
        "after the first batch this process used %s",
        encoded,
        end.wall - clock[0].wall,
        readers.waited,
        readers.waited - (readers.first or 0.0),
        (times - readers_then[-1]).line(workers, end.wall - clock[-1].wall),
        parts.waited,
        parts.processes,
        parts.busy,
        end.since(clock[-1], encoded - timing.warmup_views),
    )
    return encoded


@dataclass
class HostClock:
    """Wall time and this process's CPU time (all its threads, and its main thread's) at
    some moment, for embed's log."""

    wall: float
    cpu: float
    thread: float

    @classmethod
    def now(cls) -> HostClock:
        times = os.times()
        return cls(time.perf_counter(), times.user + times.system, time.thread_time())

    def since(self, earlier: HostClock, views: int) -> str:
        """What this process's CPU did from `earlier` to this moment, over `views` views."""
        if views <= 0:
            return "no time (one batch)"
        per_view = [
            (now - then) / views * 1000
            for now, then in [(self.cpu, earlier.cpu), (self.thread, earlier.thread)]
        ]
        return (
            f"{per_view[0]:.1f} ms of CPU a view, {per_view[1]:.1f} in its main thread, "
            f"over {views / max(self.wall - earlier.wall, 1e-9):.0f} views/s"
        )


class WaitClock:
    """An iterable's items, adding up in `waited` the seconds spent waiting for each."""

    def __init__(self, items: Iterable):
        self.items, self.waited = items, 0.0
        self.first = None  # the wait for the first item

    def __iter__(self) -> Iterator:
        items = iter(self.items)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - start
                if self.first is None:
                    self.first = self.waited
            yield item
