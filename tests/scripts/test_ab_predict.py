"""scripts/ab_predict.py: predict on a folder, an earlier version against this one."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import PROJECT, run_script


def test_it_answers_its_help():
    done = run_script("ab_predict.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.slow
def test_the_same_predict_twice_writes_the_same_masks(tmp_path):
    earlier = shutil.copy(PROJECT / "floodcache" / "predict" / "folder.py", tmp_path / "old.py")
    work = tmp_path / "work"
    work.mkdir()
    done = run_script(
        "ab_predict.py",
        *(earlier, "--images", 2, "--model-type", "vit_tiny", "--device", "cpu"),
        *("--rounds", 1, "--workdir", work),
    )
    assert done.returncode == 0, done.stderr
    assert "old0: 2 images" in done.stdout and "new0: 2 images" in done.stdout
    assert "same masks: True" in done.stdout
    assert list(work.iterdir()) == []  # its scenes and masks are removed
