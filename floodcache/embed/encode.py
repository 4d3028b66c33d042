"""The heart of `embed`: this process's share of the pending views read, encoded and written
as parts, in four steps: size the batches, stream them through the encoder, count what was
written, log where the time went."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from floodcache.cache.writer import CacheWriter
from floodcache.data.pairs import Pair
from floodcache.data.views import ViewKey
from floodcache.embed.clocks import HostClock, Timing, WaitClock
from floodcache.embed.config import EmbedConfig
from floodcache.embed.part_writer import Assembler, PartWriter
from floodcache.embed.plan import pending_batches
from floodcache.embed.readers import (
    Handover,
    ReaderTimes,
    default_workers,
    described,
    read_batches,
)
from floodcache.runtime import Runtime
from floodcache.sam.batch_encoder import BatchEncoder, default_batch_size
from floodcache.sam.modeling import Sam
from floodcache.utils.estimate import estimate_line

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What one embed process encodes, and with what: the model, the views planned, the pairs
    they come from, the run's settings, where it runs and its clocks."""

    sam: Sam
    plan: list[ViewKey]
    pairs: dict[str, Pair]
    config: EmbedConfig  # precision resolved, as `runtime.precision`
    runtime: Runtime
    timing: Timing


@dataclass
class Share:
    """This process's part of a run: its batches, their size and the reader processes."""

    batches: list[list[ViewKey]]
    batch_size: int
    workers: int

    @property
    def views(self) -> int:
        return sum(len(batch) for batch in self.batches)


@dataclass
class Written:
    """What the writers have written so far, counted as each batch's last part lands."""

    bar: tqdm
    timing: Timing
    readers: ReaderTimes = field(default_factory=ReaderTimes)
    views: int = 0
    start: HostClock = field(default_factory=HostClock.now)
    first: HostClock | None = None  # once the first batch is written ...
    readers_at_first: ReaderTimes | None = None  # ... and the readers' times then
    total: int = 0  # the views this process encodes, for the estimate after the first batch
    cpu: bool = False

    def __call__(self, count: int, finished: float) -> None:
        self.views += count
        self.timing.first_batch(count, finished)
        if self.first is None:
            self.first, self.readers_at_first = HostClock.now(), replace(self.readers)
            if self.total > self.views:  # said once, before the long part
                seconds, left = finished - self.start.wall, self.total - self.views
                log.info("embed: %s", estimate_line("view", count, seconds, left, self.cpu))
        self.bar.update(count)


def encode_pending(job: Job, writer: CacheWriter, assembler: Assembler | None) -> int:
    """Encode this process's share of the pending batches, one part per batch (each handed
    to `assembler`, if any, once written); the views encoded."""
    done = writer.done()
    share = _share(job, done)
    group, config = job.runtime.group, job.config
    job.timing.batch_size, job.timing.workers = share.batch_size, share.workers
    log.info(
        "encoding %d views on %s in %s, %d per batch, %s",
        share.views,
        job.runtime.device,
        job.runtime.precision,
        share.batch_size,
        described(share.workers),
    )
    if done and group.leader:
        log.info(
            "resuming: %d of %d views were encoded by an earlier run; %d to go",
            len(done),
            len(job.plan),
            len(job.plan) - len(done),
        )
    if not share.views:
        return 0
    # One process shows the whole cache's progress; under torchrun each shows its own share.
    total, initial = (len(job.plan), len(done)) if group.world == 1 else (share.views, 0)
    bar = tqdm(
        total=total,
        initial=initial,
        unit="view",
        desc="embed" if group.world == 1 else f"embed rank {group.rank}",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    cpu = job.runtime.device.type == "cpu"
    written = Written(bar, job.timing, total=share.views, cpu=cpu)
    try:
        readers, parts = _stream(job, share, writer, assembler, written)
    finally:
        bar.close()
    _log_where_time_went(written, readers, parts, share.workers)
    return written.views


def _share(job: Job, done: set) -> Share:
    """Size the batches (as asked, else for the device), cut the plan the same way in every
    process, and take this process's share."""
    config, device, group = job.config, job.runtime.device, job.runtime.group
    job.sam.image_encoder.to(device)  # before sizing batches: the weights count as used memory
    size = config.batch_size or default_batch_size(device, config.model_type, config.precision)
    size = group.from_leader(size)  # every process cuts the plan the same way
    workers = default_workers() if config.workers is None else config.workers
    return Share(group.share(pending_batches(job.plan, done, size)), size, workers)


def _stream(
    job: Job, share: Share, writer: CacheWriter, assembler: Assembler | None, written: Written
) -> tuple[WaitClock, PartWriter]:
    """Read, encode and write every batch of the share: (the readers' wait clock, the part
    writer), for the log."""
    config, device = job.config, job.runtime.device
    # Fast attention (same maths), batches that fit the device's memory, halved on OOM; on
    # CUDA the next batch encodes while the writer processes write this one (`PartWriter`).
    views_encoder = BatchEncoder(
        job.sam,
        device,
        config.model_type,
        config.precision,
        batch_size=share.batch_size,
        views=share.views,
        resize=config.resize,
        compile=config.compile,
    )
    # The readers' pixels are borrowed: the encoder is done with a batch's when it asks for
    # the next but one (`stream`), and on CUDA they go to the GPU straight from the readers'
    # page-locked memory.
    cuda = device.type == "cuda"
    handover = Handover(borrow=True, pin=cuda, times=written.readers)
    batches = read_batches(share.batches, job.pairs, config, share.workers, handover)
    readers = WaitClock(batches)
    with PartWriter(writer, written, assembler, pin=cuda) as parts:
        # On CUDA the embeddings come straight into the writers' memory
        submitted = 0
        for batch, embeddings in views_encoder.stream(readers, parts.memory if cuda else None):
            for view, embedding in zip(batch, embeddings, strict=True):
                view["embeddings"] = embedding
            submitted += len(batch)
            parts.submit(batch, last=submitted == share.views)
    return readers, parts


def _log_where_time_went(written: Written, readers: WaitClock, parts, workers: int) -> None:
    end = HostClock.now()
    first = written.first or end
    log.info("encoded %d views in %.1f s", written.views, end.wall - written.start.wall)
    # Where that time went is for whoever tunes embed (--verbose), not for every run.
    log.debug(
        "waited %.1f s for the readers (%.1f s after the first "
        "batch, when %s) and %.1f s for the %d writer processes, which wrote for %.1f s; "
        "after the first batch this process used %s",
        readers.waited,
        readers.waited - (readers.first or 0.0),
        (written.readers - (written.readers_at_first or written.readers)).line(
            workers, end.wall - first.wall
        ),
        parts.waited,
        parts.processes,
        parts.busy,
        end.since(first, written.views - written.timing.warmup_views),
    )
