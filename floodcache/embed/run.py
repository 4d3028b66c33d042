"""`embed`: audited pairs -> augmented views -> SAM image encoder -> HDF5 cache.

Reading, augmenting and preprocessing run in reader processes (`readers`); the encoder runs in
batches on the GPU when there is one (`encode`); writer processes write each finished batch as
a crash-safe part, so a killed run resumes where it stopped and ends with the same cache as an
uninterrupted one, and another process assembles the cache from the parts as they are
written (`part_writer`).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import asdict, replace

from floodcache.cache.format import CacheError, sam_prompt_state
from floodcache.cache.writer import CacheWriter
from floodcache.data.audit import AuditReport
from floodcache.data.audit_record import record_of
from floodcache.embed.clocks import Timing
from floodcache.embed.config import EmbedConfig, EmbedResult
from floodcache.embed.encode import Job, encode_pending
from floodcache.embed.part_writer import Assembler
from floodcache.embed.plan import audit_data, identity_of, plan_embed
from floodcache.runtime import joined
from floodcache.sam.checkpoints import resolve_checkpoint
from floodcache.sam.model import load_or_random_sam

log = logging.getLogger(__name__)


def run_embed(config: EmbedConfig, audit: AuditReport | None = None) -> EmbedResult:
    """Audit the data (unless given its `audit`, as `run` does), plan the views, encode what
    is not cached yet, and finish the cache.

    Under torchrun every process runs this: each encodes its share of the pending batches on
    its own device, and rank 0 checks the existing cache first and assembles it at the end.
    """
    start = time.perf_counter()
    resolve_checkpoint(config.model_type, config.checkpoint, config.random_weights)
    with joined(config.device, config.precision) as runtime:
        config = replace(config, precision=runtime.precision)
        audit = audit if audit is not None else audit_data(config)
        plan, pairs, excluded = plan_embed(config, audit)
        sam, checkpoint_sha = load_or_random_sam(
            config.model_type, config.checkpoint, config.random_weights
        )
        identity = identity_of(config, checkpoint_sha, plan)
        full_config = {"identity": identity, "run": _run_fields(config), "command": config.command}
        full_config["audit"] = record_of(audit, len(pairs))  # what the report says of the data
        timing = Timing(start)
        with _open_writer(runtime.group, config, identity, full_config) as writer:
            embedded = 0
            if writer.already_complete:
                log.info("%s is complete already; nothing to do", config.cache)
            else:
                job = Job(sam, plan, pairs, config, runtime, timing)
                embedded = _fill(job, writer)
                runtime.group.barrier()  # the cache is in place before anyone reports success
    return EmbedResult(
        config.cache,
        len(plan),
        embedded,
        time.perf_counter() - start,
        excluded,
        runtime.group.rank,
        warmup_seconds=timing.warmup,
        warmup_views=timing.warmup_views,
        finalize_seconds=timing.finalize,
        batch_size=timing.batch_size,
        workers=timing.workers,
    )


def _fill(job: Job, writer: CacheWriter) -> int:
    """Encode the pending views and, in the leader, assemble the cache: the leader adds the
    parts as they are written, its own and earlier runs'; the others' are added at the end."""
    group = job.runtime.group
    with Assembler(job.config.cache, job.plan) if group.leader else nullcontext() as assembler:
        if assembler is not None:
            for part in writer.part_files():
                assembler.add(part)
        embedded = encode_pending(job, writer, assembler)
        group.barrier()  # every share is written
        if assembler:
            _finish(assembler, job.sam, writer, job.timing)
    return embedded


def _finish(assembler: Assembler, sam, writer: CacheWriter, timing: Timing) -> None:
    """Complete the cache from every part and put it in place."""
    # For the report's timings: this run's wall time to the whole cache.
    writer.config["embed_seconds"] = round(time.perf_counter() - timing.start, 1)
    assembling = time.perf_counter()
    state = sam_prompt_state(sam)  # read back by Cache.sam_state
    steps = assembler.finish(writer.part_files(), writer.identity, writer.config, state)
    timing.finalize = time.perf_counter() - assembling
    log.debug(
        "finished the cache in %.2f s: %s; before that the assembler added parts for %.1f s",
        timing.finalize,
        ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()),
        assembler.busy,
    )


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
