"""`predict` on one image: SamPredictor's mask with the run's decoder, from any prompt."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from segment_anything import SamPredictor

from cli import main
from floodcache.data import decode
from floodcache.predict.config import FolderConfig, ModelConfig, PhotoConfig
from floodcache.predict.folder import run_predict_folder
from floodcache.predict.segmenter import run_predict_photo, warn_if_not_prompt_free
from floodcache.sam.model import load_sam
from floodcache.train.runs import DecoderModel, RunRecord
from tests.helpers import mask_png, photo_folder, read_predictions, save_checkpoint


def test_predict_is_sam_predictor_with_the_run_decoder(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    image_file = tiny_data / "Image" / "3.jpg"
    config = PhotoConfig(
        ModelConfig(tiny_checkpoint, finetuned_run),
        image_file,
        tmp_path / "mask.png",
        box=(10, 60, 200, 149),
    )
    result = run_predict_photo(config)
    sam = load_sam("vit_tiny", tiny_checkpoint)
    sam.mask_decoder.load_state_dict(torch.load(finetuned_run / "decoder.pt", weights_only=True))
    predictor = SamPredictor(sam)
    image, _ = decode.read_image(image_file)
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


def test_predict_keeps_an_existing_mask_unless_told_to_overwrite(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    out = tmp_path / "mask.png"
    out.write_bytes(b"an earlier result")
    config = PhotoConfig(
        ModelConfig(tiny_checkpoint, finetuned_run), tiny_data / "Image" / "0.jpg", out
    )
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_predict_photo(config)
    assert out.read_bytes() == b"an earlier result"
    config.overwrite = True
    result = run_predict_photo(config)
    assert np.array_equal(mask_png(out), result.mask)
    config.out = tmp_path / "mask.jpg"  # JPEG would blur the mask: refused
    with pytest.raises(ValueError, match="give --out a .png path"):
        run_predict_photo(config)


@pytest.mark.cuda
def test_cuda_predict_in_fp16_agrees_with_the_cpu_in_fp32(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    """On a GPU predict encodes in fp16 (as embed does): its masks and scores stay those of
    fp32 on the CPU, up to fp16's rounding. (bf16 on the CPU, 8x fp16's relative error: 99.9%
    of pixels agree, scores within 4e-4.)"""
    photos = photo_folder(tiny_data, tmp_path / "photos")
    made = {}
    for device in ("cpu", "cuda"):
        config = FolderConfig(
            ModelConfig(tiny_checkpoint, finetuned_run), photos, tmp_path / device
        )
        config.model.device, config.progress = device, False
        assert run_predict_folder(config).predicted == 3
        made[device] = read_predictions(config.out)
    for stem in ("0", "3", "10"):
        cpu, cuda = (mask_png(tmp_path / device / f"{stem}.png") for device in ("cpu", "cuda"))
        assert np.mean(cpu == cuda) >= 0.995
        scores = [float(made[device][f"{stem}.jpg"]["sam_iou"]) for device in ("cpu", "cuda")]
        assert scores[0] == pytest.approx(scores[1], abs=1e-2)


def test_predict_refuses_a_checkpoint_the_run_was_not_trained_with(
    tiny_data, finetuned_run, tmp_path
):
    other = save_checkpoint("vit_tiny", tmp_path / "other.pth", seed=1)
    config = PhotoConfig(
        ModelConfig(other, finetuned_run), tiny_data / "Image" / "0.jpg", tmp_path / "m.png"
    )
    with pytest.raises(ValueError, match="another SAM"):
        run_predict_photo(config)


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        (["--point", "nan,10"], r"--point nan,10: every coordinate must be a number"),
        (["--background", "10,inf"], r"--background 10,inf: every coordinate must be a number"),
        (["--box", "10,60,200,nan"], r"--box 10,60,200,nan: every coordinate must be a number"),
        (["--box", "200,60,10,149"], r"--box 200,60,10,149: give X0,Y0,X1,Y1 with X0 < X1"),
        (["--point", "261,10"], r"--point 261,10 is outside the image .*3.jpg \(260 x 150"),
        (["--point", "10,-1"], r"--point 10,-1 is outside the image"),
        (["--box", "0,0,300,100"], r"--box 0,0,300,100 is outside the image"),
    ],
)
def test_a_prompt_that_is_not_a_place_in_the_image_is_refused(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, prompt, says
):
    """NaN, infinite or outside clicks and boxes were taken: a mask of nothing, a NaN score."""
    args = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    args += ["--image", str(tiny_data / "Image" / "3.jpg"), "--out", str(tmp_path / "m.png")]
    result = CliRunner().invoke(main, [*args, *prompt])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert re.search(says, result.output), result.output
    assert not (tmp_path / "m.png").exists()


def test_a_prompt_on_the_image_edge_is_taken(tiny_data, tiny_checkpoint, finetuned_run, tmp_path):
    image_file = tiny_data / "Image" / "3.jpg"  # 260 x 150
    config = PhotoConfig(
        ModelConfig(tiny_checkpoint, finetuned_run),
        image_file,
        tmp_path / "m.png",
        box=(0, 0, 260, 150),
    )
    assert run_predict_photo(config).mask.shape == (150, 260)


def test_predict_refuses_an_image_over_the_pixel_limit(tiny_data, tiny_checkpoint, tmp_path):
    image = tiny_data / "Image" / "3.jpg"
    config = PhotoConfig(
        ModelConfig(tiny_checkpoint, tmp_path / "no-run"), image, tmp_path / "m.png"
    )
    config.max_pixels = 1000
    with pytest.raises(decode.UnreadableFile, match="--max-pixels"):  # before the run is read
        run_predict_photo(config)


def test_a_pixel_limit_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--max-pixels must be at least 1"):
        PhotoConfig(
            ModelConfig(tmp_path, tmp_path), tmp_path / "i.jpg", tmp_path / "m.png", max_pixels=0
        )
    with pytest.raises(ValueError, match="--max-pixels must be at least 1"):
        FolderConfig(ModelConfig(tmp_path, tmp_path), tmp_path, tmp_path / "out", max_pixels=0)


def test_the_mask_never_replaces_its_image(tiny_data, tiny_checkpoint, finetuned_run, tmp_path):
    """`--image photo.png --out photo.png --overwrite` replaced the photo with its mask."""
    photo = tmp_path / "photo.png"
    Image.open(tiny_data / "Image" / "0.jpg").save(photo)
    content = photo.read_bytes()
    config = PhotoConfig(ModelConfig(tiny_checkpoint, finetuned_run), photo, photo, overwrite=True)
    with pytest.raises(ValueError, match="is the image itself"):
        run_predict_photo(config)
    assert photo.read_bytes() == content


def test_a_run_not_trained_without_prompts_names_the_option_that_trains_one(caplog, tmp_path):
    record = RunRecord("vit_tiny", "0" * 64, {"box": {"oracle": True, "multimask": False}})
    model = DecoderModel("box", None, "0" * 64, tmp_path, record)
    warn_if_not_prompt_free(model, tmp_path)
    (said,) = [record.getMessage() for record in caplog.records]
    assert "trained on box, not `none`" in said
    flag = re.search(r"train with (--[a-z-]+) including none", said).group(1)
    assert flag in {opt for param in main.commands["train"].params for opt in param.opts}
