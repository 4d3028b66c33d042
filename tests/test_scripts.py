"""The scripts under scripts/ start: their imports follow the package as it is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import PROJECT


@pytest.mark.parametrize("script", ["profile_embed.py", "ab_predict.py"])
def test_a_script_answers_its_help(script):
    done = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
