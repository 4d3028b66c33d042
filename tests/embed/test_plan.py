"""A cache's identity: derived from `EmbedConfig`'s declarations, the same as caches built
before recorded, and every identity field tells one cache from another."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.cache.writer import CacheWriter
from floodcache.data.raster import RasterReading
from floodcache.data.views import AUGMENTED_FROM, augmentation_recipe
from floodcache.embed import run as embed_run
from floodcache.embed.config import EmbedConfig
from floodcache.embed.plan import identity_of, plan_embed
from floodcache.embed.run import run_embed
from floodcache.settings import RESIZE_METHODS
from floodcache.utils.identity import identity_fields
from tests.helpers import embed_config


def identity_before(config: EmbedConfig, checkpoint_sha256: str, plan) -> dict:
    """The identity as caches built before the declarations recorded it, written out by
    hand: what every existing cache holds and its fingerprint covers."""
    identity = {
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
    if config.raster != RasterReading():
        identity["raster"] = json.loads(json.dumps(asdict(config.raster)))
    return identity


SETTINGS = [
    {},
    {"augment": 0, "seed": 3, "limit": 4, "resize": "torch", "on_mismatch": "resize"},
    {"raster": RasterReading(bands=(3, 2, 1), scale="dtype"), "fractions": (0.5, 0.25, 0.25)},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_identity_is_written_as_caches_built_before_wrote_it(tiny_data, settings):
    config = embed_config(tiny_data, None, tiny_data / "unused.h5", **settings)
    plan, _, _ = plan_embed(config)
    ours, theirs = identity_of(config, "ab" * 32, plan), identity_before(config, "ab" * 32, plan)
    # the fingerprint hashes this very text: equal text, equal fingerprint
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_a_cache_built_before_still_verifies_and_is_reused(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    reading = RasterReading(scale="dtype")  # recorded where not the default
    config = embed_config(tiny_data, tiny_checkpoint, tmp_path / "c.h5", limit=3, raster=reading)
    with monkeypatch.context() as patched:
        patched.setattr(embed_run, "identity_of", identity_before)
        run_embed(config)
    before = config.cache.stat().st_mtime_ns
    assert verify(config.cache).ok
    again = run_embed(config)
    assert again.embedded == 0 and config.cache.stat().st_mtime_ns == before


# A changed value of each identity field of EmbedConfig, and the name the identity gives it
CHANGES = {
    "model_type": ("vit_b", "model_type"),
    "augment": (2, "augment"),
    "seed": (1, "seed"),
    "fractions": ((0.5, 0.25, 0.25), "fractions"),
    "precision": ("bf16", "precision"),
    "resize": ("torch", "resize_method"),
    "on_mismatch": ("resize", "on_mismatch"),
    "raster": (RasterReading(scale="dtype"), "raster"),
    "limit": (3, "limit"),
}


def test_every_identity_field_of_a_cache_makes_another_cache(tiny_cache, tiny_data):
    assert set(CHANGES) == set(identity_fields(EmbedConfig)), "give each identity field a change"
    with Cache.open(tiny_cache) as cache:
        sha = str(cache.file.attrs["checkpoint_sha256"])
    built = embed_config(tiny_data, None, tiny_cache, precision="fp32")  # as run_embed resolves

    def open_writer(config: EmbedConfig, checkpoint_sha256: str = sha) -> CacheWriter:
        plan, _, _ = plan_embed(config)
        identity = identity_of(config, checkpoint_sha256, plan)
        return CacheWriter(tiny_cache, identity, {"identity": identity})

    with open_writer(built) as writer:
        assert writer.already_complete  # unchanged: the same cache
    for name, (value, key) in CHANGES.items():
        with pytest.raises(CacheError, match=f"\n  {key}: cache has"):
            open_writer(replace(built, **{name: value}))
    with pytest.raises(CacheError, match="checkpoint_sha256: cache has"):
        open_writer(built, "0" * 64)  # another checkpoint file
