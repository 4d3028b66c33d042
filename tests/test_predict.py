"""`predict` segments a new image with a fine-tuned decoder; `export` merges it into SAM."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from segment_anything import SamPredictor, sam_model_registry

from cli import main
from floodcache import data
from floodcache.download import sha256_file
from floodcache.encoder import load_sam
from floodcache.predict import ExportConfig, PredictConfig, run_export, run_predict
from tests.conftest import save_checkpoint


def test_predict_is_sam_predictor_with_the_run_decoder(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    image_file = tiny_data / "Image" / "3.jpg"
    config = PredictConfig(
        tiny_checkpoint, finetuned_run, image_file, tmp_path / "mask.png", box=(10, 60, 200, 149)
    )
    result = run_predict(config)
    sam = load_sam("vit_tiny", tiny_checkpoint)
    sam.mask_decoder.load_state_dict(torch.load(finetuned_run / "decoder.pt", weights_only=True))
    predictor = SamPredictor(sam)
    image, _ = data.read_image(image_file)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=np.array([10, 60, 200, 149]), multimask_output=False)
    assert np.array_equal(result.mask, masks[0]) and result.score == pytest.approx(scores[0])
    written = np.array(Image.open(tmp_path / "mask.png"))
    assert written.shape == image.shape[:2] and set(np.unique(written)) <= {0, 255}
    assert np.array_equal(written == 255, masks[0])


def test_predict_without_a_prompt_from_the_command_line(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    out = tmp_path / "prompt_free.png"
    command = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    command += ["--image", str(tiny_data / "Image" / "0.jpg"), "--out", str(out)]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert "water" in result.output
    assert np.array(Image.open(out)).shape == (120, 160)


def test_predict_refuses_a_checkpoint_the_run_was_not_trained_with(
    tiny_data, finetuned_run, tmp_path
):
    other = save_checkpoint("vit_tiny", tmp_path / "other.pth", seed=1)
    config = PredictConfig(other, finetuned_run, tiny_data / "Image" / "0.jpg", tmp_path / "m.png")
    with pytest.raises(ValueError, match="another SAM"):
        run_predict(config)


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
