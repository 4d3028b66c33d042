"""scripts/cpu_scaling.py: the work N busy processes get done against one's."""

from __future__ import annotations

import os
import re

from tests.helpers import run_script


def test_it_prints_one_line_per_number_of_processes():
    done = run_script("cpu_scaling.py", "0.1")
    assert done.returncode == 0, done.stderr
    cores = len(os.sched_getaffinity(0))
    assert f"usable by this process {cores}" in done.stdout
    steps = [int(n) for n in re.findall(r"^\s*(\d+) processes: +[\d.]+ units/s", done.stdout, re.M)]
    assert steps[0] == 1 and cores in steps and steps == sorted(steps)
    assert re.search(r"^\s*1 processes: +[\d.]+ units/s  1\.00x$", done.stdout, re.M)
