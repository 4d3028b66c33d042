"""The README's first hour, as written: the pipeline check, then predict and export after it,
then verify, report and bench on what it made; run in order on tiny data in a fresh folder."""

from __future__ import annotations

import re
import shlex

import pytest
from click.testing import CliRunner

import cli
from tests.helpers import PROJECT

REAL_DATA = "../shared/flood_dataset"


def readme_commands(heading: str) -> list[list[str]]:
    """The `python cli.py ...` commands of the bash blocks under `heading` (to the next
    heading), continuation lines joined, as argument lists."""
    text = (PROJECT / "README.md").read_text()
    section = text[text.index(heading) :]
    section = section[: section.find("\n#", len(heading))]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("python cli.py"):
                commands.append(shlex.split(line)[2:])
    return commands


@pytest.mark.slow
def test_the_readme_first_hour_runs_as_written(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = readme_commands("### A pipeline check")
    assert [c[0] for c in commands] == ["run", "predict", "export"]
    image = sorted((tiny_data / "Image").iterdir())[0]
    commands += [
        ["verify", "--cache", "cache/smoke.h5"],
        ["report", "--metrics", "reports/smoke", "--html"],
        ["bench", "--device", "cpu", "--views", "2", "--model-type", "vit_tiny"]
        + ["--data", str(tiny_data), "--json", "reports/bench-cpu.json"]
        + [
            arg
            for stage in ("compression", "writing", "geotiff", "iterate")
            for arg in ("--skip", stage)
        ],
    ]
    runner = CliRunner()
    for args in commands:
        args = [str(tiny_data) if arg == REAL_DATA else arg for arg in args]
        args = [str(image) if arg == f"{REAL_DATA}/Image/0.jpg" else arg for arg in args]
        done = runner.invoke(cli.main, args)
        assert done.exit_code == 0, f"python cli.py {shlex.join(args)}:\n{done.output}"
    for made in ("cache/smoke.h5", "water.png", "sam_tiny_smoke.pth", "reports/smoke/report.html"):
        assert (tmp_path / made).is_file(), made
