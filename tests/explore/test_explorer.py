"""Opening the explorer: what `evaluate` and `report` refuse is refused with their messages,
and a run is answered only as it was evaluated."""

from __future__ import annotations

import shutil

import h5py
import pytest
import torch

from floodcache.cache.format import SAM_SHA256, CacheError
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import run_evaluate
from floodcache.evaluate.table import load_evaluation
from floodcache.explore.explorer import Explorer
from floodcache.train.runs import DECODER


def test_a_damaged_cache_is_refused_as_evaluate_refuses_it(explore_config, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(explore_config.cache, damaged)
    with h5py.File(damaged, "r+") as f:
        f.attrs[SAM_SHA256] = "0" * 64
    with pytest.raises(CacheError) as by_evaluate:
        run_evaluate(EvaluateConfig(damaged, tmp_path / "e", split="val", progress=False))
    config = explore_config.__class__(damaged, explore_config.evaluation, device="cpu")
    with pytest.raises(CacheError) as by_explore:
        Explorer(config)
    assert str(by_explore.value) == str(by_evaluate.value) and "is damaged" in str(by_explore.value)


def test_an_unfinished_evaluation_is_refused_as_report_refuses_it(explore_config, tmp_path):
    with pytest.raises(FileNotFoundError) as by_report:
        load_evaluation(tmp_path)
    config = explore_config.__class__(explore_config.cache, tmp_path, device="cpu")
    with pytest.raises(FileNotFoundError) as by_explore:
        Explorer(config)
    assert str(by_explore.value) == str(by_report.value)
    assert "floodcache evaluate" in str(by_explore.value)


def test_an_evaluation_of_another_cache_is_refused(explore_config, tiny_cache):
    config = explore_config.__class__(tiny_cache, explore_config.evaluation, device="cpu")
    with pytest.raises(CacheError, match="not the cache this evaluation was made from"):
        Explorer(config)


def test_a_run_changed_since_the_evaluation_is_refused(explore_config, finetuned_run, tmp_path):
    changed = tmp_path / finetuned_run.name  # same name, other weights
    shutil.copytree(finetuned_run, changed)
    state = torch.load(changed / DECODER, weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, changed / DECODER)
    config = explore_config.__class__(
        explore_config.cache, explore_config.evaluation, (changed,), device="cpu"
    )
    with pytest.raises(ValueError, match="decoder changed since the evaluation"):
        Explorer(config)


def test_a_run_the_evaluation_lacks_is_refused_naming_the_fix(
    explore_config, finetuned_run, tmp_path
):
    other = tmp_path / "other"
    shutil.copytree(finetuned_run, other)
    config = explore_config.__class__(
        explore_config.cache, explore_config.evaluation, (other,), device="cpu"
    )
    with pytest.raises(ValueError, match="is not in the evaluation") as refused:
        Explorer(config)
    assert "floodcache evaluate" in str(refused.value)


def test_without_decoder_every_evaluated_run_answers(explore_config, finetuned_run):
    explorer = Explorer(explore_config)
    try:
        assert [m.name for m in explorer.models] == ["pretrained", finetuned_run.name]
        assert explorer.models[1].run == finetuned_run
    finally:
        explorer.close()
