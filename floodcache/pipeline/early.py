"""`run`'s first look at a cache it would reuse: settings that differ from the cache's are
refused before the audit reads every file of the data set, not after it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.embed.config import EmbedConfig
from floodcache.embed.plan import identity_of
from floodcache.sam.precision import pick_device, resolve_precision
from floodcache.utils.identity import refuse_other

# Identity fields that need the audit (the views) or the checkpoint's hash (seconds for ViT-H):
# embed itself compares them after the audit, as ever.
LATE_FIELDS = ("views", "checkpoint_sha256")


def refuse_a_changed_cache(embed: EmbedConfig, fix: str) -> None:
    """CacheError listing the differences when `embed.cache` is complete and was built with
    other settings (model, seed, augmentation, precision, resize...). Nothing is read but the
    cache's header; a cache that cannot be opened is left to embed, which says why."""
    cache = Path(embed.cache)
    if not cache.is_file():
        return
    try:
        with Cache.open(cache) as opened:
            old = opened.config.get("identity", {})
    except (CacheError, OSError):
        return
    precision = resolve_precision(embed.precision, pick_device(embed.device))
    asked = identity_of(replace(embed, precision=precision), "", [])
    fields = (set(asked) | set(old)) - set(LATE_FIELDS)
    refuse_other(
        {name: old.get(name) for name in fields},
        {name: asked.get(name) for name in fields},
        f"{cache} already exists and was built differently",
        fix,
        CacheError,
        ("cache has", "asked"),
    )
