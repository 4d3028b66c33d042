"""`predict` on a folder: each image as predict does one, masks written whole, a stopped run
resumed, nothing lost."""

from __future__ import annotations

import os
import shutil
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from floodcache.predict import folder, segmenter
from floodcache.predict.config import FolderConfig, ModelConfig, PhotoConfig
from floodcache.predict.folder import run_predict_folder
from floodcache.predict.segmenter import run_predict_photo
from floodcache.utils import estimate, outputs
from tests.helpers import (
    full_disk_at,
    held_by_another_process,
    mask_png,
    photo_folder,
    read_predictions,
)


def photo_config(tiny_data, checkpoint, run, tmp_path) -> FolderConfig:
    """predict on `photo_folder`'s photos into tmp_path/water, without a progress bar."""
    photos = photo_folder(tiny_data, tmp_path / "photos")
    config = FolderConfig(ModelConfig(checkpoint, run), photos, tmp_path / "water")
    config.progress = False
    return config


def test_predict_folder_segments_each_image_as_predict_does_one(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    result = run_predict_folder(config)
    assert (result.predicted, result.kept, result.unreadable) == (3, [], ["notes.txt"])
    rows = read_predictions(result.out)
    assert list(rows) == ["0.jpg", "3.jpg", "10.jpg", "notes.txt"]  # natural order
    for stem in ("0", "3", "10"):
        image, one_out = config.images / f"{stem}.jpg", tmp_path / f"one-{stem}.png"
        one = run_predict_photo(
            PhotoConfig(ModelConfig(tiny_checkpoint, finetuned_run), image, one_out)
        )
        mask = mask_png(result.out / f"{stem}.png")
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
    write_mask, threads = segmenter.write_mask, []

    def noted(out, mask, *score):
        threads.append(threading.current_thread().name)
        return write_mask(out, mask, *score)

    monkeypatch.setattr(folder, "write_mask", noted)
    photos = photo_folder(tiny_data, tmp_path / "photos")
    config = FolderConfig(ModelConfig(tiny_checkpoint, finetuned_run), photos, tmp_path / "water")
    assert run_predict_folder(config).predicted == 3
    assert len(threads) == 3 and all(name.startswith("predict-writer") for name in threads)


def _stop_at_the_second_image(monkeypatch) -> None:
    """Make predict stop as Ctrl-C would, when it comes to write the second image's mask
    (3.png; masks are written in threads, so not necessarily the second written)."""
    write_mask = segmenter.write_mask

    def stopped_at_the_second(out, mask, *score):
        if out.name == "3.png":
            raise KeyboardInterrupt
        return write_mask(out, mask, *score)

    monkeypatch.setattr(folder, "write_mask", stopped_at_the_second)


def test_predict_folder_goes_on_where_a_stopped_run_stopped(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    write_mask = segmenter.write_mask
    _stop_at_the_second_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_predict_folder(config)
    # masks are written in threads: a later image's may be done before the stop is seen
    done = sorted(p.name for p in config.out.glob("*.png"))
    assert done in (["0.png"], ["0.png", "10.png"]) and not list(config.out.glob(".*.tmp"))
    # written however the run ended: the images done (and the unreadable file, if read ahead)
    summary = [name for name in read_predictions(config.out) if name != "notes.txt"]
    assert sorted(summary) == sorted(name.replace(".png", ".jpg") for name in done)
    first = (config.out / "0.png").stat().st_mtime_ns
    monkeypatch.setattr(folder, "write_mask", write_mask)
    result = run_predict_folder(config)
    assert (result.predicted, len(result.kept)) == (3 - len(done), len(done))
    assert (config.out / "0.png").stat().st_mtime_ns == first
    rows = read_predictions(config.out)
    assert list(rows) == ["0.jpg", "3.jpg", "10.jpg", "notes.txt"]
    assert rows["0.jpg"]["sam_iou"] != ""  # the earlier run's row, kept
    (config.out / "predictions.csv").unlink()  # stopped before its summary: read back
    result = run_predict_folder(config)
    assert (result.predicted, len(result.kept)) == (0, 3)
    kept = read_predictions(config.out)  # each mask's score, read back from the mask
    assert [kept[name]["sam_iou"] for name in rows] == [rows[name]["sam_iou"] for name in rows]
    mask = mask_png(config.out / "3.png")
    assert float(read_predictions(config.out)["3.jpg"]["water_fraction"]) == pytest.approx(
        mask.mean()
    )
    config.overwrite = True
    assert run_predict_folder(config).predicted == 3


def test_predict_folder_loses_nothing_it_did_not_write(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    photos = photo_folder(tiny_data, tmp_path / "photos")
    out = tmp_path / "water"
    out.mkdir()
    (out / "3.png").write_bytes(b"someone's own mask")
    config = FolderConfig(ModelConfig(tiny_checkpoint, finetuned_run), photos, out, progress=False)
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
        run_predict_folder(
            FolderConfig(ModelConfig(tiny_checkpoint, other), photos, out, progress=False)
        )
    replace = FolderConfig(
        ModelConfig(tiny_checkpoint, other), photos, out, overwrite=True, progress=False
    )
    _stop_at_the_second_image(monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # replacing them, stopped part way
        run_predict_folder(replace)
    done = sorted(p.name for p in out.glob("*.png"))  # none of the first decoder: 3.png went
    assert done in (["0.png"], ["0.png", "10.png"])
    monkeypatch.undo()
    result = run_predict_folder(
        FolderConfig(ModelConfig(tiny_checkpoint, other), photos, out, progress=False)
    )
    assert (result.predicted, len(result.kept)) == (3 - len(done), len(done))
    with pytest.raises(ValueError, match="give another folder"):
        run_predict_folder(
            FolderConfig(ModelConfig(tiny_checkpoint, finetuned_run), photos, photos)
        )
    (photos / "3.png").write_bytes(b"")
    with pytest.raises(ValueError, match="share the stem '3'.*rename one"):
        run_predict_folder(config)


def test_predict_folder_on_a_full_disk_says_so_and_leaves_no_partial_file(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch, caplog
):
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)

    full_disk_at(monkeypatch, lambda target: not target.endswith("predict.json"))
    with pytest.raises(ValueError, match="could not write .*0.png .*No space left.*with room"):
        run_predict_folder(config)
    assert sorted(p.name for p in config.out.iterdir()) == ["predict.json"]  # written before
    assert "could not write" in caplog.text and "predictions.csv" in caplog.text


def test_predict_a_folder_from_the_command_line(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    photos = photo_folder(tiny_data, tmp_path / "photos")
    command = ["predict", "--checkpoint", str(tiny_checkpoint), "--decoder", str(finetuned_run)]
    command += ["--image", str(photos), "--out", str(tmp_path / "water")]
    clicked = CliRunner().invoke(main, [*command, "--box", "1,2,30,40"])
    assert clicked.exit_code == 2 and "give --image FILE" in clicked.output
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert "3 images segmented, 0 kept from an earlier run, 1 unreadable" in result.output
    assert mask_png(tmp_path / "water" / "10.png").shape == (170, 120)  # image 5's size


def test_an_image_whose_name_is_not_utf8_is_segmented_and_summed_up(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    """Its row made the whole summary fail to encode: predict left it out, and exited 0."""
    photos = photo_folder(tiny_data, tmp_path / "photos")
    os.rename(photos / "3.jpg", os.path.join(os.fsencode(photos), b"caf\xe9.jpg"))
    config = FolderConfig(ModelConfig(tiny_checkpoint, finetuned_run), photos, tmp_path / "water")
    config.progress = False
    assert run_predict_folder(config).predicted == 3
    rows = read_predictions(config.out)
    assert rows["caf\\xe9.jpg"]["mask"] == "caf\\xe9.png" and rows["caf\\xe9.jpg"]["sam_iou"]
    assert os.path.isfile(os.path.join(os.fsencode(config.out), b"caf\xe9.png"))
    assert len(run_predict_folder(config).kept) == 3  # and a rerun keeps its row


def test_a_summary_that_cannot_be_written_fails_the_run(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch
):
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    full_disk_at(monkeypatch, lambda target: target.endswith("predictions.csv"))
    with pytest.raises(ValueError, match="could not write .*predictions.csv .*No space left"):
        run_predict_folder(config)


def test_predict_folder_lists_an_image_over_the_pixel_limit_as_unreadable(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    config.max_pixels = 20_000  # 0.jpg is 160 x 120, the others more
    result = run_predict_folder(config)
    assert result.predicted == 1 and result.unreadable == ["3.jpg", "10.jpg", "notes.txt"]
    assert "--max-pixels" in read_predictions(config.out)["3.jpg"]["problem"]


def test_a_second_predict_into_one_folder_stops_at_once(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path
):
    """Two predicts into one folder: the loser failed on a temporary file the other renamed,
    with a message about a full disk; now the second stops at once, naming the first."""
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    take = lambda: outputs.writing(config.out, "predict", within=True)  # noqa: E731
    with held_by_another_process(take) as holder:
        with pytest.raises(ValueError, match=f"another predict is writing .*process {holder}"):
            run_predict_folder(config)
    assert list(config.out.iterdir()) == []
    run_predict_folder(config)  # the lock went with the process that held it
    assert not list(config.out.glob(".*lock")) and (config.out / "0.png").is_file()


def test_predict_folder_says_its_time_after_the_first_batch_on_a_fake_clock(
    tiny_data, tiny_checkpoint, finetuned_run, tmp_path, monkeypatch, caplog
):
    """The first batch took 12 s (fake clock): the images left are estimated from it, and on
    a CPU the line says what is quicker, before the rest is segmented."""
    ticks = iter([100.0, 112.0])
    monkeypatch.setattr(estimate, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    config = photo_config(tiny_data, tiny_checkpoint, finetuned_run, tmp_path)
    (config.images / "notes.txt").unlink()
    for stem in ("11", "12"):  # 5 images: more than a CPU batch
        shutil.copy(config.images / "3.jpg", config.images / f"{stem}.jpg")
    with caplog.at_level("INFO", logger="floodcache.predict.folder"):
        result = run_predict_folder(config)
    batch = result.batch_size
    assert result.predicted == 5 and batch < 5
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("predict: ")]
    assert said == ["predict: " + estimate.estimate_line("image", batch, 12.0, 5 - batch, True)]
    assert "on a GPU" in said[0]
