"""`export`: the fine-tuned decoder merged into a full SAM checkpoint that segment-anything
loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from segment_anything import sam_model_registry

from cli import main
from floodcache.export import ExportConfig, run_export
from floodcache.sam.model import load_sam
from floodcache.utils.hashing import sha256_file
from tests.helpers import full_disk_save


def test_export_merges_the_decoder_into_a_full_checkpoint(tiny_checkpoint, finetuned_run, tmp_path):
    out = run_export(ExportConfig(tiny_checkpoint, finetuned_run, tmp_path / "merged.pth"))
    merged = load_sam("vit_tiny", out).state_dict()
    original = torch.load(tiny_checkpoint, weights_only=True)
    decoder = torch.load(finetuned_run / "decoder.pt", weights_only=True)
    assert merged.keys() == original.keys()
    for key, value in merged.items():
        part, _, name = key.partition(".")
        expected = decoder[name] if part == "mask_decoder" else original[key]
        assert torch.equal(value, expected), key
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_export(ExportConfig(tiny_checkpoint, finetuned_run, out))


def test_export_loads_with_segment_anything_registry_vit_b(
    vit_b_checkpoint, finetuned_run, tmp_path
):
    """A real ViT-B checkpoint: the merged file loads with sam_model_registry["vit_b"]."""
    run = tmp_path / "vit_b_run"
    shutil.copytree(finetuned_run, run)  # the mask decoder is the same for every model type
    record = json.loads((run / "config.json").read_text())
    record |= {"model_type": "vit_b", "checkpoint_sha256": sha256_file(vit_b_checkpoint)}
    (run / "config.json").write_text(json.dumps(record))
    out = CliRunner().invoke(
        main,
        ["export", "--checkpoint", str(vit_b_checkpoint), "--decoder", str(run),
         "--out", str(tmp_path / "sam_vit_b_flood.pth")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    sam = sam_model_registry["vit_b"](checkpoint=str(tmp_path / "sam_vit_b_flood.pth"))
    decoder = torch.load(run / "decoder.pt", weights_only=True)
    for name, value in sam.mask_decoder.state_dict().items():
        assert torch.equal(value, decoder[name]), name
    encoder_key = "image_encoder.patch_embed.proj.weight"
    original = torch.load(vit_b_checkpoint, weights_only=True)[encoder_key]
    assert torch.equal(sam.state_dict()[encoder_key], original)


def test_a_full_disk_names_the_file_and_leaves_no_partial_one(
    tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(torch, "save", full_disk_save(torch.save))
    out = tmp_path / "merged.pth"
    args = ["--checkpoint", tiny_checkpoint, "--decoder", finetuned_run, "--out", out]
    result = CliRunner().invoke(main, ["export", *map(str, args)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"could not write {out}" in result.output and "No space left" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_export_never_replaces_the_checkpoint_it_merges_into(
    tiny_checkpoint, finetuned_run, tmp_path
):
    checkpoint = tmp_path / "sam.pth"
    shutil.copy(tiny_checkpoint, checkpoint)
    config = ExportConfig(checkpoint, finetuned_run, checkpoint, overwrite=True)
    with pytest.raises(ValueError, match="is the SAM checkpoint itself"):
        run_export(config)
    assert sha256_file(checkpoint) == sha256_file(tiny_checkpoint)
