"""scripts/profile_embed.py: where embed's main thread spends its CPU."""

from __future__ import annotations

import pytest

from tests.helpers import run_script


def test_it_answers_its_help():
    done = run_script("profile_embed.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.slow
def test_it_profiles_embed_on_two_generated_views(tmp_path):
    done = run_script(
        "profile_embed.py",
        *("--views", 2, "--resize", "pil", "--model-type", "vit_tiny", "--device", "cpu"),
        *("--top", 3),
        TMPDIR=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "=== resize pil: 2 views in" in done.stdout
    assert "run_embed" in done.stdout  # the cumulative listing reaches embed's entry point
