"""`train` from the command line: the run is named after the training mix."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import cli
from floodcache.train import run as train_run


def test_a_run_is_named_after_its_training_mix_however_it_is_spelt(monkeypatch):
    seen = []

    def run_train(config):
        seen.append(config)
        raise KeyboardInterrupt  # nothing trained: the config is what this test is about

    monkeypatch.setattr(train_run, "run_train", run_train)
    result = CliRunner().invoke(cli.main, ["train", "--train-prompts", "point, box"])
    assert result.exit_code == 130
    assert seen[0].out == Path("runs") / "point+box"
