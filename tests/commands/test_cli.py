"""The command line as a user meets it first: `--help` and `audit` answer without torch;
the choices offered are the library's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import cli
from tests.helpers import PROJECT

ROOT = PROJECT
HEAVY = ("torch", "torchvision", "segment_anything", "albumentations", "matplotlib", "polars")


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running `code` in the root."""
    report = f"import json, sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_code(args: list[str]) -> str:
    """Python code running `python cli.py ARGS` in-process; it fails unless the exit code is 0."""
    return (
        "import cli\n"
        "try:\n"
        f"    cli.main({args!r}, prog_name='cli.py')\n"
        "except SystemExit as end:\n"
        "    assert end.code == 0, end.code"
    )


COMMANDS = ["download", "audit", "embed", "verify", "train", "evaluate", "report", "run"]
COMMANDS += ["predict", "export", "bench", "explore"]


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_imports_no_torch(command):
    # Importing torch, torchvision and albumentations took ~5 s of every --help here.
    assert heavy_modules_after(cli_code([*command, "--help"])) == []


def test_audit_runs_without_torch(tiny_data, tmp_path):
    out = tmp_path / "problems.csv"
    audit = ["audit", "--data", str(tiny_data), "--out", str(out)]
    assert heavy_modules_after(cli_code(audit)) == []
    assert out.read_text().startswith("image,mask,problem,detail")


def test_the_gpu_check_needs_no_polars():
    """A GPU machine set up to embed and train need not have polars: bench, embed, train,
    predict and the CUDA tests' modules import without it, or scripts/device_check.sh would
    fail before measuring anything. Only report reads with it."""
    modules = "cli, floodcache.bench.run, floodcache.predict.folder, tests.predict.test_segmenter, "
    modules += "tests.embed.test_run, tests.embed.test_readers, tests.sam.test_fast_encoder"
    assert "polars" not in heavy_modules_after(f"import {modules}")


def test_importing_floodcache_asks_no_server_for_albumentations_updates():
    """albumentations checks PyPI on import unless told not to: floodcache turns that off
    (its opener, made for that request alone, is never made), and keeps a user's own choice."""
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}

    def run(code: str, **setting: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", f"import os\n{code}"],
            cwd=ROOT,
            env=env | setting,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    checked = "import floodcache.data.views, albumentations.check_version as c\n"
    checked += "print(c.opener is None)"
    assert run(checked) == "True"
    setting = "print(os.environ['NO_ALBUMENTATIONS_UPDATE'])"
    assert run(f"import floodcache\n{setting}") == "1"
    assert run(f"import floodcache\n{setting}", NO_ALBUMENTATIONS_UPDATE="0") == "0"


def test_the_choices_offered_are_the_ones_the_library_has():
    import cli
    from floodcache.embed import slots
    from floodcache.sam import precision

    def choices(command: str, option: str) -> set[str]:
        param = next(p for p in cli.main.commands[command].params if p.name == option)
        return set(param.type.choices)

    assert choices("embed", "precision") == {"auto", *precision.DTYPES}
    assert choices("train", "precision") <= {"auto", *precision.DTYPES}
    assert choices("embed", "resize") == set(slots.SLOT_BYTES)
    assert choices("embed", "model_type") == {"vit_b", "vit_l", "vit_h", "vit_tiny"}


def test_importing_floodcache_gives_every_stage_and_costs_nothing():
    assert heavy_modules_after("import floodcache") == []
    stages = (
        "import floodcache\nfloodcache.run_embed, floodcache.EmbedConfig, floodcache.run_report"
    )
    assert "torch" in heavy_modules_after(stages)  # imported when first used
    import floodcache

    for name in floodcache.__all__:
        assert callable(getattr(floodcache, name)), name
    for stage in ("embed", "train", "evaluate", "report", "predict"):
        assert f"run_{stage}" in dir(floodcache)


def test_audit_takes_files_outside_the_data_folder_only_when_allowed(tiny_data, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_data, data_dir)
    rows = (data_dir / "metadata.csv").read_text().replace("0.jpg,", "../Image/0.jpg,")
    (data_dir / "metadata.csv").write_text(rows)
    refused = CliRunner().invoke(cli.main, ["audit", "--data", str(data_dir)])
    assert refused.exit_code == 1 and "--allow-outside-paths" in refused.output
    allowed = CliRunner().invoke(
        cli.main, ["audit", "--data", str(data_dir), "--allow-outside-paths"]
    )
    assert allowed.exit_code == 0 and "7 usable" in allowed.output, allowed.output


def test_every_command_that_reads_images_takes_a_pixel_limit(tiny_data):
    result = CliRunner().invoke(cli.main, ["audit", "--data", str(tiny_data), "--max-pixels", "1"])
    assert result.exit_code == 0 and "0 usable, 7 excluded" in result.output, result.output
    for command in ("embed", "run", "predict"):
        assert "max_pixels" in {p.name for p in cli.main.commands[command].params}


def test_audit_never_writes_over_the_metadata_it_reads(tiny_data, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_data, data_dir)
    listed = (data_dir / "metadata.csv").read_text()
    out = data_dir / "." / "metadata.csv"
    result = CliRunner().invoke(cli.main, ["audit", "--data", str(data_dir), "--out", str(out)])
    assert result.exit_code == 2 and "is the data's metadata.csv" in result.output
    assert (data_dir / "metadata.csv").read_text() == listed


def test_reading_commands_import_no_torch(finetuned_evaluation, train_cache, tmp_path):
    """`verify` and `report --metrics` only read: they answer without torch."""
    metrics = finetuned_evaluation[0].out
    report = ["report", "--metrics", str(metrics), "--out", str(tmp_path / "report")]
    torch_free = {"torch", "torchvision", "segment_anything"}
    assert torch_free.isdisjoint(heavy_modules_after(cli_code(report)))
    assert (tmp_path / "report" / "report.md").is_file()
    verify = ["verify", "--cache", str(train_cache)]
    assert torch_free.isdisjoint(heavy_modules_after(cli_code(verify)))


def test_training_and_evaluating_import_no_compiler():
    """Nothing compiles there: torch._dynamo (which torchvision imports) stays out."""
    code = (
        "import sys, floodcache.train.run, floodcache.evaluate.evaluate, floodcache.predict.folder"
    )
    code += "\nassert 'torch._dynamo' not in sys.modules and 'torchvision' not in sys.modules"
    code += "\nfrom segment_anything import SamPredictor, sam_model_registry  # still there"
    heavy_modules_after(code)


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_every_help_fits_one_screen_and_help_all_shows_every_option(command):
    """--help names every option in at most ~40 lines; --help-all describes each one."""
    runner = CliRunner()
    short = runner.invoke(cli.main, [*command, "--help"], terminal_width=80)
    assert short.exit_code == 0 and len(short.output.splitlines()) <= 41, short.output
    if not command or "--help-all" not in short.output:  # short enough with every option
        return
    full = runner.invoke(cli.main, [*command, "--help-all"], terminal_width=80)
    assert full.exit_code == 0, full.output
    options = [p for p in cli.main.commands[command[0]].params if isinstance(p, click.Option)]
    for param in options:
        assert param.opts[0] in short.output, param.opts[0]  # named, at least
        if param.help:
            assert param.help.split()[0] in full.output, param.opts[0]
    assert "Advanced options" not in full.output
    again = runner.invoke(cli.main, [*command, "--help"], terminal_width=80)
    assert again.output == short.output  # --help-all changes nothing for the next --help


def test_train_and_run_train_the_same_prompts_by_default():
    """`train` alone and `run` make the same decoder unless told otherwise."""
    from floodcache.pipeline.config import PipelineConfig
    from floodcache.train.config import TrainConfig

    def default(command: str, name: str):
        return next(p for p in cli.main.commands[command].params if p.name == name).default

    assert default("train", "train_prompts") == default("run", "train_prompts")
    assert TrainConfig().train_prompts == PipelineConfig().train.train_prompts == "point,box,none"
    for command in ("train", "run"):
        assert "best validation IoU" in (
            next(p for p in cli.main.commands[command].params if p.name == "epochs").help or ""
        )
