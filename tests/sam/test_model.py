"""SAM built and loaded: checkpoints checked, the fix named when one is wrong or missing."""

from __future__ import annotations

import pytest
import torch

from floodcache.sam import model
from floodcache.sam.checkpoints import CheckpointError, resolve_checkpoint
from floodcache.sam.model import load_sam


def test_load_sam_roundtrip(tiny_checkpoint):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, weights_only=True)
    for name, tensor in sam.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match="floodcache download --model-type vit_b"):
        load_sam("vit_b", tmp_path / "nope.pth")


def test_truncated_checkpoint_is_refused(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        load_sam("vit_tiny", broken)


def test_non_sam_file_is_refused(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_sam("vit_tiny", other)


def test_wrong_model_type_names_the_right_one(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="--model-type vit_tiny"):
        load_sam("vit_b", tiny_checkpoint)


def test_no_checkpoint_looks_in_the_default_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOODCACHE_CHECKPOINT_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="floodcache download --model-type vit_b"):
        model.load_or_random_sam("vit_b", None, random_weights=False)


def test_no_checkpoint_needs_explicit_random_weights(caplog):
    with pytest.raises(CheckpointError, match="--random-weights"):
        model.load_or_random_sam("vit_tiny", None, random_weights=False)
    _, sha = model.load_or_random_sam("vit_tiny", None, random_weights=True)
    assert sha == "random-weights"
    assert "RANDOM WEIGHTS" in caplog.text and "MEANINGLESS" in caplog.text
    (banner,) = [r.getMessage() for r in caplog.records if "RANDOM WEIGHTS" in r.getMessage()]
    assert banner.splitlines()[0].strip()  # "WARNING" is never a line of its own


def test_a_missing_checkpoint_never_suggests_a_command_that_is_refused(tmp_path):
    """vit_tiny has no official checkpoint: `download --model-type vit_tiny` would be refused."""
    missing_file = tmp_path / "nope.pth"
    for fetch in (load_sam, lambda *given: resolve_checkpoint(*given, random_weights=False)):
        with pytest.raises(CheckpointError) as missing:
            fetch("vit_tiny", missing_file)
        assert "download" not in str(missing.value) and "--checkpoint" in str(missing.value)
