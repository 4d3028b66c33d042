"""`bench` from the command line: the options build the config, the table is printed."""

from __future__ import annotations

from click.testing import CliRunner

import cli
from floodcache.bench import run as bench_run
from floodcache.bench.table import Bench


def test_cli_builds_the_config_and_prints_the_table(monkeypatch, tmp_path):
    seen = {}

    def fake_run_bench(config):
        seen["config"] = config
        return Bench("cpu", config.model_type, "RANDOM WEIGHTS (speed only)", 0)

    monkeypatch.setattr(bench_run, "run_bench", fake_run_bench)
    args = ["bench", "--device", "cpu", "--views", "3", "--model-type", "vit_tiny"]
    args += ["--embed-views", "40"]
    args += ["--skip", "compression", "--skip", "eager-encoders", "--skip", "writing"]
    args += ["--resize", "torch", "--resize", "pil", "--skip", "mask-encoders"]
    result = CliRunner().invoke(cli.main, [*args, "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.device, config.views, config.model_type) == ("cpu", 3, "vit_tiny")
    assert config.embed_views == 40
    assert config.skip == {"compression", "eager-encoders", "writing", "mask-encoders"}
    assert config.resizes == ("torch", "pil")
    assert config.json_path == tmp_path / "b.json"
    assert "bench: SAM vit_tiny on cpu" in result.output
    help_text = CliRunner().invoke(cli.main, ["bench", "--help"]).output
    assert "Example: python cli.py bench" in help_text
