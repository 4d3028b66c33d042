"""`run` from the command line: each option reaches the stages that take it, and every
setting is checked before any work is done."""

from __future__ import annotations

from types import SimpleNamespace

from click.testing import CliRunner

import cli
from floodcache.pipeline import run as pipeline_run


def test_run_passes_the_seed_to_every_stage_the_evaluation_included(tiny_data, monkeypatch):
    seen = []

    def run_pipeline(config):
        seen.append(config)
        return SimpleNamespace(steps={})

    monkeypatch.setattr(pipeline_run, "run_pipeline", run_pipeline)
    args = ["run", "--data", str(tiny_data), "--random-weights", "--model-type", "vit_tiny"]
    result = CliRunner().invoke(cli.main, [*args, "--seed", "3", "--eval-prompts", "box"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.embed.seed, config.train.seed, config.report.evaluate.seed) == (3, 3, 3)
    assert config.report.evaluate.eval_prompts == "box"
    assert config.report.evaluate.cache == config.embed.cache == config.train.cache
    assert config.report.evaluate.decoders == (config.train.out,)


def test_run_refuses_a_bad_setting_before_any_work(tiny_data, tmp_path):
    """A misspelt prompt is refused at once, not after hours of embedding."""
    base = ["run", "--data", str(tiny_data), "--random-weights", "--model-type", "vit_tiny"]
    base += ["--out-dir", str(tmp_path)]
    for bad in (["--train-prompts", "cente"], ["--eval-prompts", "point,cente"]):
        result = CliRunner().invoke(cli.main, [*base, *bad])
        assert result.exit_code == 1
        assert "unknown prompt strategy 'cente'" in result.output
        assert "point, center, points, box, box+point, none" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing audited, embedded or trained


def test_run_refuses_a_negative_seed_or_a_path_as_name_before_any_work(tiny_data, tmp_path):
    """--seed -1 failed after the whole data set was audited, naming no option."""
    base = ["run", "--data", str(tiny_data), "--random-weights", "--model-type", "vit_tiny"]
    base += ["--out-dir", str(tmp_path)]
    for bad, says in (
        (["--seed", "-1"], "--seed must be at least 0"),
        (["--name", "../../x"], "--name '../../x' is not a plain name"),
    ):
        result = CliRunner().invoke(cli.main, [*base, *bad])
        assert result.exit_code == 1 and says in result.output, result.output
    assert list(tmp_path.iterdir()) == []  # nothing audited, embedded or trained
