"""scripts/device_check.sh, the GPU checks: what can be checked without a GPU."""

from __future__ import annotations

import subprocess

from tests.helpers import PROJECT, run_script


def test_it_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(PROJECT / "scripts" / "device_check.sh")])
    assert done.returncode == 0


def test_without_a_gpu_it_stops_at_once_and_says_why(tmp_path):
    out = tmp_path / "results"
    # run from elsewhere than the checkout, with no GPU visible to torch
    done = run_script("device_check.sh", out, cwd=tmp_path, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1
    assert "needs a CUDA GPU, and torch sees none here" in done.stderr
    assert "bench --device cpu" in done.stderr
    assert not out.exists()  # nothing was installed, measured or written
