"""What `embed` will encode: the audited pairs, their split and views (the plan), the
identity that tells one cache from another, and the plan cut into batches."""

from __future__ import annotations

import logging

from floodcache.data.audit import AuditReport, Reading, audit_folder
from floodcache.data.decode import path_str
from floodcache.data.pairs import Pair
from floodcache.data.views import (
    AUGMENTED_FROM,
    ViewKey,
    assign_splits,
    augmentation_recipe,
    plan_views,
)
from floodcache.embed.config import EmbedConfig
from floodcache.utils.identity import identity_of as declared_identity
from floodcache.utils.program import command

log = logging.getLogger(__name__)


def identity_of(config: EmbedConfig, checkpoint_sha256: str, plan: list[ViewKey]) -> dict:
    """What makes a cache what it is: two runs with equal identity give the same cache. The
    fields `EmbedConfig` declares, and what they lead to: the checkpoint's sha256, the
    augmentation (when there is one) and every planned view."""
    return declared_identity(
        config,
        checkpoint_sha256=checkpoint_sha256,
        augmentation_recipe=augmentation_recipe() if config.augment else None,
        augmented_from=AUGMENTED_FROM if config.augment else None,
        views=[[k.image_id, k.view, k.split] for k in plan],
    )


def audit_data(config: EmbedConfig) -> AuditReport:
    """The audit of the data `config` names, as `embed` reads it."""
    return audit_folder(
        config.data_dir,
        config.images,
        config.masks,
        config.on_mismatch,
        config.progress,
        Reading(config.allow_outside_paths, config.max_pixels, config.raster),
    )


def plan_embed(
    config: EmbedConfig, audit: AuditReport | None = None
) -> tuple[list[ViewKey], dict[str, Pair], dict]:
    """Audit the data (`audit` if made already) and plan every view: (plan, usable pairs by
    id, excluded pairs)."""
    report = audit if audit is not None else audit_data(config)
    if report.excluded:
        log.warning(
            "excluding %d unusable pairs: %s",
            len(report.excluded),
            ", ".join(f"{path_str(k)} ({'/'.join(v)})" for k, v in report.excluded.items()),
        )
    usable = report.usable[: config.limit] if config.limit else report.usable
    if not usable:
        raise ValueError(f"no usable image/mask pair found: run {command('audit')} to see why")
    pairs = {pair.image_id: pair for pair in usable}
    ids = list(pairs)
    splits = assign_splits(ids, config.seed, config.fractions, report.image_hashes)
    return plan_views(ids, splits, config.augment), pairs, report.excluded


def pending_batches(plan: list[ViewKey], done: set, batch_size: int) -> list[list[ViewKey]]:
    """The plan cut into batches of `batch_size`, less the views already done.

    The cut is made on the whole plan, so a resumed or multi-process run encodes the same
    views together as a single uninterrupted run does.
    """
    batches = [plan[i : i + batch_size] for i in range(0, len(plan), batch_size)]
    pending = [[key for key in batch if (key.image_id, key.view) not in done] for batch in batches]
    return [batch for batch in pending if batch]
