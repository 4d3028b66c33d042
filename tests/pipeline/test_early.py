"""`run` refuses a cache built with other settings before its audit reads the data."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from floodcache.cache.format import CacheError
from floodcache.embed import plan
from floodcache.pipeline.config import PipelineConfig
from floodcache.pipeline.early import refuse_a_changed_cache
from floodcache.pipeline.run import run_pipeline
from tests.helpers import embed_config


def test_changed_settings_are_refused_before_the_audit(
    tiny_cache, tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    (tmp_path / "cache").mkdir()
    shutil.copy(tiny_cache, tmp_path / "cache" / "tiny.h5")
    same = embed_config(tiny_data, tiny_checkpoint, tmp_path / "cache" / "tiny.h5")
    refuse_a_changed_cache(same, "the fix")  # the cache's own settings: nothing to refuse

    def no_audit(*args, **kwargs):
        raise AssertionError("the audit ran before the refusal")

    monkeypatch.setattr(plan, "audit_folder", no_audit)
    config = PipelineConfig(
        embed=dataclasses.replace(same, seed=1),
        out_dir=tmp_path,
        name="tiny",
        progress=False,
    )
    with pytest.raises(CacheError) as refused:
        run_pipeline(config)
    message = str(refused.value)
    assert "tiny.h5 already exists and was built differently" in message
    assert "seed" in message and "choose another --name" in message
