"""`bench` runs every stage on a CPU and reports what it measured."""

from __future__ import annotations

import json

import pytest
import torch

from floodcache.bench import io
from floodcache.bench import run as bench_run
from floodcache.bench.config import BenchConfig
from floodcache.bench.run import run_bench
from floodcache.sam.batch_encoder import CPU_BATCH


def tiny_config(**settings) -> BenchConfig:
    """The quickest bench there is: vit_tiny on 2 views, one training step, no readers."""
    tiny = dict(device="cpu", views=2, model_type="vit_tiny", train_batch_size=2, train_steps=1)
    return BenchConfig(**(tiny | dict(workers=0) | settings))


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    json_path = tmp_path_factory.mktemp("bench") / "bench.json"
    return run_bench(tiny_config(json_path=json_path)), json_path


def test_every_stage_is_measured(tiny_bench):
    result, _ = tiny_bench
    stages = [row.stage for row in result.rows]
    assert stages[:2] == ["reference SamPredictor", "reference train step"]
    expected = {"encoder SAM attention", "encoder fast", "embed readers alone", "train from cache"}
    expected.add("explore")
    assert expected <= set(stages)
    assert "embed (whole run)" in stages  # 2 views: one batch, no steady part to time
    encoders = [row for row in result.rows if row.stage.startswith("encoder")]
    assert {row.precision for row in encoders} == {"fp32", "bf16"}  # no fp16 on a CPU
    for row in result.rows:
        assert row.views > 0 and row.seconds > 0, row
        assert row.peak_mb > 0 or row.stage == "embed readers alone", row
    assert result.rows[0].ratio == pytest.approx(1.0)
    train = next(row for row in result.rows if row.stage == "train from cache")
    assert train.ratio == pytest.approx(train.views_per_second / result.rows[1].views_per_second)


def test_predict_on_a_folder_is_timed_as_a_user_runs_it(tiny_bench):
    result, _ = tiny_bench
    (predict,) = [row for row in result.rows if row.stage == "predict (folder)"]
    # 2 views are one image and its augmented view: predict gets the one image
    assert (predict.views, predict.precision, predict.batch) == (1, "fp32", CPU_BATCH)
    assert predict.ratio == pytest.approx(
        predict.views_per_second / result.rows[0].views_per_second
    )
    assert "1 images read, encoded, decoded, written as PNG" in predict.note


def test_predict_on_a_geotiff_is_timed_tile_by_tile(tiny_bench):
    result, _ = tiny_bench
    (scene,) = [row for row in result.rows if row.stage == "predict (GeoTIFF)"]
    # 2 views: a scene of two tiles side by side (1024 x 2048), tiled with the default
    # overlap: three tiles across
    assert (scene.views, scene.precision, scene.batch) == (3, "fp32", CPU_BATCH)
    assert "a 1024 x 2048 GeoTIFF in 3 tiles of 1024 px overlapping by 128" in scene.note
    assert scene.seconds > 0 and scene.peak_mb > 0


def test_reading_and_the_iteration_loop_are_measured(tiny_bench):
    result, _ = tiny_bench
    rows = {row.stage: row for row in result.rows}
    read = rows["cache read"]
    assert read.views == 2 and read.seconds > 0  # bench's cache: its 2 views
    share = float(read.note.split("% of the file's plain sequential read")[0].split(" ")[-1])
    assert share > 0, read.note
    iterate = rows["iterate"]
    # 3 images split 1/1/1; the training one has 2 views, trained for 15 epochs
    assert iterate.views == 2 * 15 and iterate.precision == "fp32"
    assert "evaluate + report" in iterate.note
    assert iterate.ratio == pytest.approx(
        iterate.views_per_second / result.rows[1].views_per_second
    )


def test_fast_fp32_encoder_matches_the_reference(tiny_bench):
    result, _ = tiny_bench
    fast = next(r for r in result.rows if r.stage == "encoder fast" and r.precision == "fp32")
    assert fast.rel_error < 1e-5 and fast.mask_iou == pytest.approx(1.0)


def test_compression_is_measured_not_guessed(tiny_bench):
    result, _ = tiny_bench
    sizes = {c["filter"]: c["bytes_per_view"] for c in result.compression}
    assert set(sizes) == set(io.COMPRESSIONS)
    assert sizes["none"] >= 256 * 64 * 64 * 2  # float16, uncompressed
    assert sizes["shuffle+gzip-4"] < sizes["none"]


def test_writing_is_timed_both_ways(tiny_bench):
    """embed's writing side, in line and in the background, on copies of the bench's views."""
    result, json_path = tiny_bench
    writing = result.writing
    assert writing["views"] == io.WRITING_VIEWS and writing["batch"] == bench_run.WRITING_BATCH
    for name in ("in_line_ms_per_view", "background_ms_per_view", "main_cpu_ms_per_view"):
        assert writing[name] > 0, name
    in_line, background = writing["in_line_ms_per_view"], writing["background_ms_per_view"]
    assert writing["speedup"] == pytest.approx(in_line / background)
    assert "cache writing, 256 views in parts of 32" in result.table()
    assert json.loads(json_path.read_text())["writing"] == writing


def test_table_and_json_say_what_was_run(tiny_bench):
    result, json_path = tiny_bench
    table = result.table()
    assert "RANDOM WEIGHTS" in table and "views/s" in table and "train from cache" in table
    saved = json.loads(json_path.read_text())
    assert saved["model_type"] == "vit_tiny" and saved["device"] == "cpu"
    assert [row["stage"] for row in saved["rows"]] == [row.stage for row in result.rows]
    assert all(row["views_per_second"] > 0 for row in saved["rows"])


def test_a_skipped_stage_is_left_out_and_embed_runs_for_each_resize():
    config = tiny_config(skip=frozenset({"compression", "writing"}), resizes=("pil", "torch"))
    config.embed_views = 6  # embed gets more views than the other stages' 2
    result = run_bench(config)
    assert result.compression == [] and "cache: float16" in result.table()
    assert result.writing == {} and "cache writing" not in result.table()
    embeds = [row for row in result.rows if row.stage.startswith("embed (")]
    readers = [row for row in result.rows if row.stage == "embed readers alone"]
    assert [row.note.split("resize ")[1][:5] for row in embeds] == ["pil; ", "torch"]
    assert [row.note.split("resize ")[1][:5] for row in readers] == ["pil, ", "torch"]
    after_first_batch = config.embed_views - CPU_BATCH
    assert [row.views for row in readers] == [after_first_batch] * 2
    assert all(row.views == 2 for row in result.rows if row.stage.startswith("encoder"))
    for row in readers:  # the CPU they used, as measured
        cpu = float(row.note.split(" ms of reader CPU")[0].split(" ")[-1])
        assert cpu > 0, row.note


def test_the_reference_is_timed_after_one_untimed_view(tiny_data, monkeypatch):
    """Every stage leaves its first batch out (a GPU's first call sets CUDA up, for seconds):
    the reference must too, or a few reference views make every ratio look better. A fake
    clock: the first set_image takes 100 s, each later one 1 s, each training loss 0.5 s."""
    from types import SimpleNamespace

    from segment_anything import SamPredictor

    from floodcache.bench import encoders as bench_encoders
    from floodcache.bench import table as bench_table
    from floodcache.bench.encoders import bench_views, reference_stages
    from floodcache.sam.model import build_sam

    now, calls = [0.0], []
    set_image, losses = SamPredictor.set_image, bench_encoders.losses

    def set_image_on_the_clock(predictor, image, *args, **kwargs):
        calls.append(image.shape)
        now[0] += 100.0 if len(calls) == 1 else 1.0
        return set_image(predictor, image, *args, **kwargs)

    def losses_on_the_clock(*args, **kwargs):
        now[0] += 0.5
        return losses(*args, **kwargs)

    monkeypatch.setattr(SamPredictor, "set_image", set_image_on_the_clock)
    monkeypatch.setattr(bench_encoders, "losses", losses_on_the_clock)
    monkeypatch.setattr(bench_table, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    views = bench_views(tiny_data, augment=1, count=2)
    encode, step, features = reference_stages(build_sam("vit_tiny"), views, torch.device("cpu"))
    assert len(calls) == 3  # one untimed view, then each view timed
    assert encode.views == step.views == 2 and len(features) == 2
    assert encode.seconds == pytest.approx(2 * 1.0)  # the untimed first view's 100 s left out
    assert step.seconds == pytest.approx(2 * (1.0 + 0.5))  # encoder and decoder step


def test_ab_predict_compares_two_predicts_on_the_same_images(tmp_path):
    """scripts/ab_predict.py, given this folder.py as the earlier one: same masks, a ratio."""
    import subprocess
    import sys

    from tests.helpers import PROJECT

    script, old = (
        PROJECT / "scripts" / "ab_predict.py",
        PROJECT / "floodcache" / "predict" / "folder.py",
    )
    args = ["--images", "2", "--model-type", "vit_tiny", "--device", "cpu", "--rounds", "1"]
    done = subprocess.run(
        [sys.executable, str(script), str(old), *args, "--profile", str(tmp_path / "p.txt")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "old0: 2 images" in done.stdout and "new0: 2 images" in done.stdout
    assert "same masks: True" in done.stdout and "x\n" in done.stdout
    profile = (tmp_path / "p.txt").read_text()
    assert "Ordered by: internal time" in profile and "floodcache/" in profile
