"""Where SAM checkpoints are looked for, and what a missing one's message says to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodcache.sam import checkpoints
from floodcache.sam.checkpoints import CheckpointNotFound, default_checkpoint_path, find_checkpoint

VIT_B = "sam_vit_b_01ec64.pth"


def test_unknown_model_type_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of vit_b, vit_l, vit_h"):
        default_checkpoint_path("vit_x")


def test_default_checkpoint_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoints.CHECKPOINT_DIR_ENV, raising=False)
    assert default_checkpoint_path("vit_b") == Path("checkpoints") / VIT_B
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIR_ENV, str(tmp_path))
    assert default_checkpoint_path("vit_b") == tmp_path / VIT_B
    assert default_checkpoint_path("vit_b", tmp_path / "other") == tmp_path / "other" / VIT_B


def test_find_checkpoint_returns_existing_files(tmp_path):
    (tmp_path / VIT_B).write_bytes(b"x")
    assert find_checkpoint("vit_b", checkpoint_dir=tmp_path) == tmp_path / VIT_B
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"x")
    assert find_checkpoint("vit_b", checkpoint=mine) == mine


def test_find_checkpoint_names_the_file_and_the_fix(tmp_path):
    (tmp_path / f"{VIT_B}.part").write_bytes(b"x")
    with pytest.raises(CheckpointNotFound) as raised:
        find_checkpoint("vit_b", checkpoint_dir=tmp_path)
    assert isinstance(raised.value, FileNotFoundError)
    message = str(raised.value)
    assert f"No SAM vit_b checkpoint at {tmp_path / VIT_B}." in message
    assert f"  floodcache download --model-type vit_b --checkpoint-dir {tmp_path}\n" in message
    assert "--checkpoint FILE" in message
    assert "--random-weights" in message
    assert "partial download" in message


def test_find_checkpoint_for_a_given_missing_file(tmp_path):
    given = tmp_path / "elsewhere" / "sam_l.pth"
    with pytest.raises(CheckpointNotFound) as raised:
        find_checkpoint("vit_l", checkpoint=given)
    message = str(raised.value)
    assert f"No SAM vit_l checkpoint at {given}." in message
    assert f"--model-type vit_l --checkpoint-dir {given.parent}" in message


def test_a_checkpoint_dir_that_is_a_file_is_named_with_where_it_was_set(tmp_path, monkeypatch):
    """$FLOODCACHE_CHECKPOINT_DIR naming a file gave a bare "File exists"."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("the user's")
    monkeypatch.setenv(checkpoints.CHECKPOINT_DIR_ENV, str(a_file))
    with pytest.raises(ValueError, match=r"\$FLOODCACHE_CHECKPOINT_DIR names .*notes.txt, a file"):
        find_checkpoint("vit_b")
    with pytest.raises(ValueError, match="--checkpoint-dir names .*notes.txt, a file"):
        default_checkpoint_path("vit_b", a_file)
    assert a_file.read_text() == "the user's"
