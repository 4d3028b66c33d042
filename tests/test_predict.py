"""`predict` segments a new image with a fine-tuned decoder; `export` merges it into SAM."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from segment_anything import SamPredictor, sam_model_registry

from cli import main
from floodcache import data
from floodcache import predict as predict_module
from floodcache.download import sha256_file
from floodcache.encoder import load_sam
from floodcache.export import ExportConfig, run_export
from floodcache.predict import FolderConfig, PredictConfig, run_predict, run_predict_folder
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


def test_predict_keeps_an_existing_mask_unless_told_to_overwrite(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    out = tmp_path / "mask.png"
    out.write_bytes(b"an earlier result")
    config = PredictConfig(tiny_checkpoint, finetuned_run, tiny_data / "Image" / "0.jpg", out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_predict(config)
    assert out.read_bytes() == b"an earlier result"
    config.overwrite = True
    result = run_predict(config)
    assert np.array_equal(_mask(out), result.mask)
    config.out = tmp_path / "mask.jpg"  # JPEG would blur the mask: refused
    with pytest.raises(ValueError, match="give --out a .png path"):
        run_predict(config)


def _mask(path) -> np.ndarray:
    return np.array(Image.open(path)) == 255


def _photos(tiny_data, folder, names=("0.jpg", "3.jpg", "10.jpg")):
    """A folder of photos named `names` (tiny_data's images 0, 3, 5), and a file that is not
    an image."""
    folder.mkdir()
    for name, source in zip(names, ("0.jpg", "3.jpg", "5.jpg"), strict=True):
        shutil.copy(tiny_data / "Image" / source, folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _summary(out) -> dict[str, dict]:
    with (out / "predictions.csv").open(newline="") as lines:
        return {row["image"]: row for row in csv.DictReader(lines)}


def test_predict_folder_segments_each_image_as_predict_does_one(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    photos = _photos(tiny_data, tmp_path / "photos")
    config = FolderConfig(tiny_checkpoint, finetuned_run, photos, tmp_path / "water")
    config.progress = False
    result = run_predict_folder(config)
    assert (result.predicted, result.kept, result.unreadable) == (3, [], ["notes.txt"])
    rows = _summary(result.out)
    assert list(rows) == ["0.jpg", "3.jpg", "10.jpg", "notes.txt"]  # natural order
    for stem in ("0", "3", "10"):
        image, one_out = photos / f"{stem}.jpg", tmp_path / f"one-{stem}.png"
        one = run_predict(PredictConfig(tiny_checkpoint, finetuned_run, image, one_out))
        mask = _mask(result.out / f"{stem}.png")
        assert np.array_equal(mask, one.mask)
        row = rows[f"{stem}.jpg"]
        assert row["mask"] == f"{stem}.png" and row["problem"] == ""
        assert float(row["water_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
        assert float(row["sam_iou"]) == pytest.approx(one.score, abs=1e-6)
    assert "notes.txt: cannot be read as an image" in rows["notes.txt"]["problem"]
    assert rows["notes.txt"]["mask"] == "" and not (result.out / "notes.png").exists()


def test_predict_folder_writes_masks_while_sam_goes_on(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    """PNG encoding and writing is not the main thread's work: on a GPU it would wait."""
    write_mask, threads = predict_module.write_mask, []

    def noted(out, mask):
        threads.append(threading.current_thread().name)
        return write_mask(out, mask)

    monkeypatch.setattr(predict_module, "write_mask", noted)
    photos = _photos(tiny_data, tmp_path / "photos")
    config = FolderConfig(tiny_checkpoint, finetuned_run, photos, tmp_path / "water")
    assert run_predict_folder(config).predicted == 3
    assert len(threads) == 3 and all(name.startswith("predict-writer") for name in threads)


def _stop_at_the_second_image(monkeypatch) -> None:
    """Make predict stop as Ctrl-C would, when it comes to write the second image's mask
    (3.png; masks are written in threads, so not necessarily the second written)."""
    write_mask = predict_module.write_mask

    def stopped_at_the_second(out, mask):
        if out.name == "3.png":
            raise KeyboardInterrupt
        return write_mask(out, mask)

    monkeypatch.setattr(predict_module, "write_mask", stopped_at_the_second)


def test_predict_folder_goes_on_where_a_stopped_run_stopped(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    photos = _photos(tiny_data, tmp_path / "photos")
    config = FolderConfig(tiny_checkpoint, finetuned_run, photos, tmp_path / "water")
    config.progress = False
    write_mask = predict_module.write_mask
    _stop_at_the_second_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_predict_folder(config)
    # masks are written in threads: a later image's may be done before the stop is seen
    done = sorted(p.name for p in config.out.glob("*.png"))
    assert done in (["0.png"], ["0.png", "10.png"]) and not list(config.out.glob(".*.tmp"))
    # written however the run ended: the images done (and the unreadable file, if read ahead)
    summary = [name for name in _summary(config.out) if name != "notes.txt"]
    assert sorted(summary) == sorted(name.replace(".png", ".jpg") for name in done)
    first = (config.out / "0.png").stat().st_mtime_ns
    monkeypatch.setattr(predict_module, "write_mask", write_mask)
    result = run_predict_folder(config)
    assert (result.predicted, len(result.kept)) == (3 - len(done), len(done))
    assert (config.out / "0.png").stat().st_mtime_ns == first
    rows = _summary(config.out)
    assert list(rows) == ["0.jpg", "3.jpg", "10.jpg", "notes.txt"]
    assert rows["0.jpg"]["sam_iou"] != ""  # the earlier run's row, kept
    (config.out / "predictions.csv").unlink()  # stopped before its summary: read back
    result = run_predict_folder(config)
    assert (result.predicted, len(result.kept)) == (0, 3)
    mask = _mask(config.out / "3.png")
    assert float(_summary(config.out)["3.jpg"]["water_fraction"]) == pytest.approx(mask.mean())
    config.overwrite = True
    assert run_predict_folder(config).predicted == 3


def test_predict_folder_loses_nothing_it_did_not_write(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    photos = _photos(tiny_data, tmp_path / "photos")
    out = tmp_path / "water"
    out.mkdir()
    (out / "3.png").write_bytes(b"someone's own mask")
    config = FolderConfig(tiny_checkpoint, finetuned_run, photos, out, progress=False)
    with pytest.raises(FileExistsError, match="3.png .*not written by predict.*--overwrite"):
        run_predict_folder(config)
    assert (out / "3.png").read_bytes() == b"someone's own mask"
    (out / "3.png").unlink()
    run_predict_folder(config)
    other = tmp_path / "other_run"  # the same run, but for one weight of its decoder
    shutil.copytree(finetuned_run, other)
    state = torch.load(other / "decoder.pt", weights_only=True)
    next(iter(state.values())).add_(1)
    torch.save(state, other / "decoder.pt")
    with pytest.raises(FileExistsError, match="masks of another decoder"):
        run_predict_folder(FolderConfig(tiny_checkpoint, other, photos, out, progress=False))
    replace = FolderConfig(tiny_checkpoint, other, photos, out, overwrite=True, progress=False)
    _stop_at_the_second_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # replacing them, stopped part way
        run_predict_folder(replace)
    done = sorted(p.name for p in out.glob("*.png"))  # none of the first decoder: 3.png went
    assert done in (["0.png"], ["0.png", "10.png"])
    monkeypatch.undo()
    result = run_predict_folder(FolderConfig(tiny_checkpoint, other, photos, out, progress=False))
    assert (result.predicted, len(result.kept)) == (3 - len(done), len(done))
    with pytest.raises(ValueError, match="give another folder"):
        run_predict_folder(FolderConfig(tiny_checkpoint, finetuned_run, photos, photos))
    (photos / "3.png").write_bytes(b"")
    with pytest.raises(ValueError, match="share the stem '3'.*rename one"):
        run_predict_folder(config)


def test_predict_folder_on_a_full_disk_says_so_and_leaves_no_partial_file(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch, caplog
):
    photos = _photos(tiny_data, tmp_path / "photos")
    config = FolderConfig(tiny_checkpoint, finetuned_run, photos, tmp_path / "water")
    config.progress = False

    replace = os.replace

    def disk_full_after_the_record(source, target):
        if not str(target).endswith("predict.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full_after_the_record)
    with pytest.raises(ValueError, match="could not write .*0.png .*No space left.*with room"):
        run_predict_folder(config)
    assert sorted(p.name for p in config.out.iterdir()) == ["predict.json"]  # written before
    assert "could not write" in caplog.text and "predictions.csv" in caplog.text


def test_predict_a_folder_from_the_command_line(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    photos = _photos(tiny_data, tmp_path / "photos")
    command = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    command += ["--image", str(photos), "--out", str(tmp_path / "water")]
    clicked = CliRunner().invoke(main, [*command, "--box", "1,2,30,40"])
    assert clicked.exit_code == 2 and "give --image FILE" in clicked.output
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert "3 images segmented, 0 kept from an earlier run, 1 unreadable" in result.output
    assert _mask(tmp_path / "water" / "10.png").shape == (170, 120)  # image 5's size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_predict_in_fp16_agrees_with_the_cpu_in_fp32(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    """On a GPU predict encodes in fp16 (as embed does): its masks and scores stay those of
    fp32 on the CPU, up to fp16's rounding. (bf16 on the CPU, 8x fp16's relative error: 99.9%
    of pixels agree, scores within 4e-4.)"""
    photos = _photos(tiny_data, tmp_path / "photos")
    made = {}
    for device in ("cpu", "cuda"):
        config = FolderConfig(tiny_checkpoint, finetuned_run, photos, tmp_path / device)
        config.device, config.progress = device, False
        assert run_predict_folder(config).predicted == 3
        made[device] = _summary(config.out)
    for stem in ("0", "3", "10"):
        cpu, cuda = (_mask(tmp_path / device / f"{stem}.png") for device in ("cpu", "cuda"))
        assert np.mean(cpu == cuda) >= 0.995
        scores = [float(made[device][f"{stem}.jpg"]["sam_iou"]) for device in ("cpu", "cuda")]
        assert scores[0] == pytest.approx(scores[1], abs=1e-2)


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
