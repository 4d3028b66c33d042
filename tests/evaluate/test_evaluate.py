"""`evaluate`: one row per (model, prompt, view), reproducible with SamPredictor, never lost."""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor

from floodcache.cache import loading
from floodcache.cache.reader import Cache
from floodcache.data import decode
from floodcache.embed.run import run_embed
from floodcache.evaluate import evaluate as evaluate_module
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import run_evaluate, writing_evaluation
from floodcache.evaluate.metrics import mask_metrics
from floodcache.evaluate.table import load_evaluation, prompt_from_row
from floodcache.sam.model import load_sam
from floodcache.train.runs import PRETRAINED
from floodcache.utils.identity import identity_fields
from tests.helpers import embed_config, held_by_another_process, write_dataset

PROMPTS = "point,box,none"


REQUIRED = {
    "model", "prompt", "oracle", "image_id", "view", "split", "iou", "dice", "precision",
    "recall", "water_fraction", "predicted_fraction", "predicted_iou", "height", "width",
    "points", "labels", "box", "skipped", "image_file", "multimask",
}  # fmt: skip


def test_one_row_per_model_prompt_and_view(finetuned_evaluation, finetuned_run):
    config, result = finetuned_evaluation
    table = result.table
    assert REQUIRED <= set(table.columns)
    assert table.height == 2 * 3 * 3  # 2 models x 3 prompts x 3 val views
    assert set(table["model"]) == {PRETRAINED, finetuned_run.name}
    oracle = dict(zip(table["prompt"], table["oracle"], strict=True))
    assert oracle == {"point": True, "box": True, "none": False}
    assert not table["skipped"].any() and table["split"].unique().to_list() == ["val"]
    # every model sees the very same prompt on a view
    prompts = table.group_by("prompt", "row").agg(pl.col("points", "box").n_unique())
    assert prompts["points"].max() == prompts["box"].max() == 1
    stored, metadata = load_evaluation(config.out)
    assert stored.equals(table)
    assert metadata["identity"]["prompts"] == ["point", "box", "none"]
    assert set(metadata["seconds"]["per_model"]) == {PRETRAINED, finetuned_run.name}
    assert (config.out / "metrics.csv").read_text().startswith("model,prompt,oracle")


def test_prompts_come_from_the_full_resolution_mask_in_original_pixels(finetuned_evaluation):
    _, result = finetuned_evaluation
    with Cache.open(result.metadata["cache"]) as cache:
        for row in result.table.filter(pl.col("model") == PRETRAINED).iter_rows(named=True):
            mask = cache.full_mask(row["row"])
            assert mask.shape == (row["height"], row["width"])
            prompt = prompt_from_row(row)
            if row["prompt"] == "box":  # no jitter at evaluation: the exact water box
                rows, cols = np.nonzero(mask)
                assert prompt.box.tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]
            if row["prompt"] == "point":
                (x, y), (label,) = prompt.points[0], prompt.labels
                assert label == 1 and mask[int(y), int(x)] == 1
            if row["prompt"] == "none":
                assert prompt.points is None and prompt.box is None


def test_sam_predictor_with_the_recorded_prompt_reproduces_the_recorded_iou(
    finetuned_evaluation, tiny_checkpoint, finetuned_run
):
    """What the table promises: anyone can rerun SAM on the image with the row's prompt.

    One row per (model, prompt), spread over the three images.
    """
    _, result = finetuned_evaluation
    run = finetuned_run.name
    sams = {name: load_sam("vit_tiny", tiny_checkpoint) for name in (PRETRAINED, run)}
    sams[run].mask_decoder.load_state_dict(
        torch.load(finetuned_run / "decoder.pt", weights_only=True)
    )
    pairs = itertools.product(sams, PROMPTS.split(","))
    rows = [
        result.table.filter((pl.col("model") == model) & (pl.col("prompt") == prompt)).row(
            k % 3, named=True
        )
        for k, (model, prompt) in enumerate(pairs)
    ]
    assert len({row["image_id"] for row in rows}) == 3
    for row in rows:
        image, _ = decode.read_image(Path(row["image_file"]))
        mask_file = Path(row["image_file"].replace("Image", "Mask")).with_suffix(".png")
        truth, _ = decode.read_mask(mask_file)
        predictor = SamPredictor(sams[row["model"]])
        predictor.set_image(image)
        prompt = prompt_from_row(row)
        masks, scores, _ = predictor.predict(
            point_coords=None if prompt.points is None else np.array(prompt.points),
            point_labels=None if prompt.labels is None else np.array(prompt.labels),
            box=None if prompt.box is None else np.array(prompt.box),
            multimask_output=row["multimask"],
        )
        best = int(np.argmax(scores))
        # the cache stores embeddings as float16: equal up to a few boundary pixels
        assert mask_metrics(masks[best], truth)["iou"] == pytest.approx(row["iou"], abs=2e-3)
        assert scores[best] == pytest.approx(row["predicted_iou"], abs=2e-3)
        assert masks[best].mean() == pytest.approx(row["predicted_fraction"], abs=2e-3)


def test_a_finished_evaluation_is_reused_refused_or_replaced(finetuned_evaluation):
    config, _ = finetuned_evaluation
    written = (config.out / "metrics.parquet").stat().st_mtime_ns
    again = run_evaluate(config)
    assert again.reused and (config.out / "metrics.parquet").stat().st_mtime_ns == written
    other = EvaluateConfig(config.cache, config.out, config.decoders, "none", "val")
    with pytest.raises(FileExistsError, match="--overwrite") as error:
        run_evaluate(other)
    assert "prompts" in str(error.value)
    assert load_evaluation(config.out)[1]["identity"]["prompts"] == ["point", "box", "none"]


def test_overwrite_replaces_an_evaluation_made_differently(train_cache, tmp_path):
    out = tmp_path / "eval"
    run_evaluate(EvaluateConfig(train_cache, out, eval_prompts="none", split="val", progress=False))
    with pytest.raises(FileExistsError):
        run_evaluate(
            EvaluateConfig(train_cache, out, eval_prompts="box", split="val", progress=False)
        )
    replaced = run_evaluate(
        EvaluateConfig(
            train_cache, out, eval_prompts="box", split="val", overwrite=True, progress=False
        )
    )
    assert not replaced.reused and set(load_evaluation(out)[0]["prompt"]) == {"box"}


def test_a_second_evaluate_into_one_folder_stops_at_once(train_cache, tmp_path):
    """Two evaluates with different settings into one --out both exited 0, one result lost."""
    out = tmp_path / "eval"
    config = EvaluateConfig(train_cache, out, eval_prompts="none", split="val", progress=False)
    with held_by_another_process(lambda: writing_evaluation(out)) as holder:
        with pytest.raises(ValueError, match=f"another evaluate is writing .*process {holder}"):
            run_evaluate(config)
    assert not out.exists()


def test_evaluate_refuses_a_folder_holding_the_users_files(train_cache, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    config = EvaluateConfig(train_cache, out, eval_prompts="none", split="val", progress=False)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="holds notes.txt .*choose another --out"):
            run_evaluate(replace(config, overwrite=overwrite))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_decoder_of_another_sam_is_refused(train_cache, finetuned_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(finetuned_run, other)
    record = json.loads((other / "config.json").read_text())
    record["checkpoint_sha256"] = "0" * 64
    (other / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="another SAM"):
        run_evaluate(EvaluateConfig(train_cache, tmp_path / "eval", (other,), split="val"))


def test_views_without_water_are_skipped_for_oracle_prompts(tiny_checkpoint, tmp_path):
    """A view without water: `box` has no prompt (skipped, null metrics), `none` is scored."""
    root = write_dataset(tmp_path / "data", [(60, 80), (70, 70), (80, 60)])
    Image.fromarray(np.zeros((70, 70), np.uint8)).save(root / "Mask" / "1.png")
    cache = tmp_path / "empty.h5"
    run_embed(embed_config(root, tiny_checkpoint, cache, augment=0, fractions=(0.0, 0.0, 1.0)))
    result = run_evaluate(EvaluateConfig(cache, tmp_path / "eval", eval_prompts="box,none"))
    empty = result.table.filter(pl.col("image_id") == "1")
    box = empty.filter(pl.col("prompt") == "box").row(0, named=True)
    assert box["skipped"] and box["iou"] is None and box["box"] is None
    assert box["water_fraction"] == 0.0
    none = empty.filter(pl.col("prompt") == "none").row(0, named=True)
    assert not none["skipped"]
    nothing_predicted = none["predicted_fraction"] == 0
    assert none["iou"] == none["precision"] == none["recall"] == float(nothing_predicted)
    assert result.metadata["skipped"] == 1
    assert result.table["skipped"].sum() == 1


# A changed value of each identity field of EvaluateConfig, and the name the identity gives it
EVALUATION_CHANGES = {
    "eval_prompts": ("box", "prompts"),
    "split": ("train", "split"),
    "seed": (1, "seed"),
    "points": (2, "points"),
}


def test_every_identity_field_of_an_evaluation_makes_another_one(finetuned_evaluation, tiny_cache):
    """A finished evaluation is reused as asked, and refused, listing the difference, when
    any identity field, the cache or the models differ."""
    config, _ = finetuned_evaluation
    assert set(EVALUATION_CHANGES) == set(identity_fields(EvaluateConfig)), "give each a change"
    assert run_evaluate(replace(config, batch_size=3)).reused  # not an identity field
    changed = {key: {name: value} for name, (value, key) in EVALUATION_CHANGES.items()}
    changed |= {"cache_fingerprint": {"cache": tiny_cache}, "models": {"decoders": ()}}
    for key, change in changed.items():
        with pytest.raises(FileExistsError, match=f"\n  {key}: earlier"):
            run_evaluate(replace(config, **change))


def test_evaluate_holds_a_bounded_window_of_embeddings(tiny_cache, tmp_path, monkeypatch):
    """The embeddings held at once are two windows, not the whole split (2 MiB a view, as
    many as the split has); the metrics are those of the whole split at once."""
    view_bytes = 256 * 64 * 64 * 2
    held, peak = [0], [0]
    real_init, real_close = loading.RowLoader.__init__, loading.RowLoader.close

    def counted_init(loader, *args, **kwargs):
        real_init(loader, *args, **kwargs)
        held[0] += loader.array.nbytes
        peak[0] = max(peak[0], held[0])

    def counted_close(loader):
        real_close(loader)
        held[0] -= loader.array.nbytes
        loader.array = None  # what the loader held is let go with it

    config = EvaluateConfig(tiny_cache, tmp_path / "whole", split="train", progress=False)
    config.batch_size = 2
    whole = run_evaluate(config).table
    monkeypatch.setattr(evaluate_module, "WINDOW_BYTES", 2 * view_bytes, raising=False)
    monkeypatch.setattr(loading.RowLoader, "__init__", counted_init)
    monkeypatch.setattr(loading.RowLoader, "close", counted_close)
    windowed = run_evaluate(replace(config, out=tmp_path / "windowed")).table
    assert len(whole.filter(pl.col("model") == PRETRAINED)["row"].unique()) == 10
    assert peak[0] <= 4 * view_bytes  # two windows of two views, of 10 views
    assert held[0] == 0
    assert windowed.drop("seconds", strict=False).equals(whole.drop("seconds", strict=False))
