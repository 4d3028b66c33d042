"""What every command shares: a file system's errors (a read-only output folder) as a
message naming the file and the fix, never a traceback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli


@pytest.fixture
def read_only(tmp_path):
    """A folder no file can be written in: made read-only, or /sys for root, whom permission
    bits do not stop."""
    if os.geteuid() == 0:
        yield Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    yield folder
    folder.chmod(0o700)


def commands(data, checkpoint, cache, run, out: Path) -> dict[str, list]:
    """Each command that writes, with its output in `out`."""
    sam = ["--checkpoint", checkpoint, "--model-type", "vit_tiny"]
    return {
        "audit": ["audit", "--data", data, "--out", out / "audit.csv"],
        "embed": ["embed", "--data", data, *sam, "--cache", out / "c.h5", "--workers", "0"],
        "train": ["train", "--cache", cache, "--out", out / "run", "--epochs", "1"],
        "evaluate": ["evaluate", "--cache", cache, "--split", "val", "--out", out / "evaluation"],
        "report": ["report", "--cache", cache, "--split", "val", "--out", out / "report"],
        "predict": ["predict", "--checkpoint", checkpoint, "--decoder", run]
        + ["--image", data / "Image", "--out", out / "masks"],
        "export": ["export", "--checkpoint", checkpoint, "--decoder", run, "--out", out / "x.pth"],
        "run": ["run", "--data", data, *sam, "--out-dir", out, "--epochs", "1"],
        "download": ["download", "--checkpoint-dir", out / "checkpoints"],
    }


@pytest.mark.parametrize("command", commands(*[Path()] * 5))
def test_a_read_only_output_folder_is_a_message_naming_it(
    command, read_only, tiny_data, tiny_checkpoint, train_cache, finetuned_run
):
    args = commands(tiny_data, tiny_checkpoint, train_cache, finetuned_run, read_only)[command]
    result = CliRunner().invoke(cli.main, list(map(str, args)))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{read_only}/" in result.output and "write" in result.output, result.output


def test_a_command_runs_from_another_thread_too(tiny_data):
    """Only the main thread may handle SIGTERM: elsewhere a command runs without it."""
    results = []

    def audit() -> None:
        results.append(CliRunner().invoke(cli.main, ["audit", "--data", str(tiny_data)]))

    thread = threading.Thread(target=audit)
    thread.start()
    thread.join(60)
    assert results[0].exit_code == 0, results[0].output
