"""Per-view segmentation metrics, and their summary over views.

From the predicted mask P (SAM's logits > 0 after its postprocessing to the original image
size) and the true mask T, both at the original resolution, as pixel counts
TP = |P & T|, FP = |P & ~T|, FN = |~P & T|:

    iou       = TP / (TP + FP + FN)
    dice      = 2 TP / (2 TP + FP + FN)
    precision = TP / (TP + FP)
    recall    = TP / (TP + FN)

A metric whose denominator is 0 is 1 when P and T are both empty (a perfect answer) and 0
otherwise. So on a view without water, predicting nothing scores 1 everywhere, and predicting
any water scores iou = dice = precision = 0 and recall = 0; on a view with water, predicting
nothing gives precision = 0 (not 1: an empty answer is not a precise one).
"""

from __future__ import annotations

import numpy as np
import polars as pl

METRICS = ("iou", "dice", "precision", "recall")
METRIC_NAMES = {"iou": "IoU", "dice": "Dice", "precision": "precision", "recall": "recall"}


def mask_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """iou, dice, precision, recall, water_fraction, predicted_fraction of two HxW masks.

    Both masks bool or {0,1}, same size. Empty denominators: see the module docstring.
    """
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    overlap = int(np.count_nonzero(prediction & truth))
    predicted, water = int(np.count_nonzero(prediction)), int(np.count_nonzero(truth))
    return metrics_from_counts(overlap, predicted, water, truth.size)


def metrics_from_counts(overlap: int, predicted: int, water: int, pixels: int) -> dict[str, float]:
    """`mask_metrics` from pixel counts: |P & T|, |P|, |T| and the mask's pixels, however they
    were counted (on a GPU, `evaluate` counts there and brings back only these)."""
    tp, fp, fn = overlap, predicted - overlap, water - overlap
    perfect = float(fp == 0 and fn == 0)  # the value of a metric whose denominator is 0

    def ratio(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else perfect

    return {
        "iou": ratio(tp, tp + fp + fn),
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "water_fraction": water / pixels,
        "predicted_fraction": predicted / pixels,
    }


def summarize(table: pl.DataFrame) -> pl.DataFrame:
    """One row per (model, prompt): views, skipped, and mean/std/median of every metric."""
    stats = [
        getattr(pl.col(m), how)().alias(f"{m}_{how}")
        for m in METRICS
        for how in ("mean", "std", "median")
    ]
    keys = ["model", "prompt"]
    counts = table.group_by(keys + ["oracle"], maintain_order=True).agg(
        (~pl.col("skipped")).sum().alias("views"), pl.col("skipped").sum().alias("skipped")
    )
    values = table.filter(~pl.col("skipped")).group_by(keys).agg(stats)
    return counts.join(values, on=keys, how="left", maintain_order="left")
