"""Per-view metrics against hand-computed cases, empty masks included, and their summary."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from floodcache.evaluate.metrics import mask_metrics, summarize


def masks(truth: str, prediction: str) -> tuple[np.ndarray, np.ndarray]:
    """'1100' -> a 1x4 mask; truth then prediction."""
    as_mask = lambda text: np.array([[c == "1" for c in text]])  # noqa: E731
    return as_mask(truth), as_mask(prediction)


@pytest.mark.parametrize(
    ("truth", "prediction", "expected"),
    [
        # TP 1, FP 1, FN 1 (4 pixels: 2 water, 2 predicted)
        ("1100", "0110", dict(iou=1 / 3, dice=2 / 4, precision=1 / 2, recall=1 / 2)),
        # TP 2, FP 2, FN 0
        ("1100", "1111", dict(iou=2 / 4, dice=4 / 6, precision=2 / 4, recall=1.0)),
        # TP 1, FP 0, FN 2
        ("1110", "1000", dict(iou=1 / 3, dice=2 / 4, precision=1.0, recall=1 / 3)),
        ("1010", "1010", dict(iou=1.0, dice=1.0, precision=1.0, recall=1.0)),
        ("1100", "0011", dict(iou=0.0, dice=0.0, precision=0.0, recall=0.0)),
        # empty truth and empty prediction: every denominator is 0, a perfect answer -> 1
        ("0000", "0000", dict(iou=1.0, dice=1.0, precision=1.0, recall=1.0)),
        # no water, but some predicted: recall's denominator is 0 and the answer is wrong -> 0
        ("0000", "0100", dict(iou=0.0, dice=0.0, precision=0.0, recall=0.0)),
        # water, but nothing predicted: precision's denominator is 0 -> 0, not 1
        ("0110", "0000", dict(iou=0.0, dice=0.0, precision=0.0, recall=0.0)),
    ],
)
def test_metrics_match_hand_computed_cases(truth, prediction, expected):
    truth_mask, predicted_mask = masks(truth, prediction)
    result = mask_metrics(predicted_mask, truth_mask)
    assert {k: result[k] for k in expected} == pytest.approx(expected)
    assert result["water_fraction"] == pytest.approx(truth.count("1") / 4)
    assert result["predicted_fraction"] == pytest.approx(prediction.count("1") / 4)


def test_metrics_accept_uint8_masks_and_refuse_other_sizes():
    truth = np.zeros((3, 5), np.uint8)
    truth[1, 1:4] = 1
    assert mask_metrics(truth.copy(), truth)["iou"] == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        mask_metrics(np.zeros((5, 3), bool), truth)


def test_summary_leaves_skipped_views_out_and_counts_them():
    table = pl.DataFrame(
        {
            "model": ["pretrained"] * 4 + ["run"] * 4,
            "prompt": ["box"] * 8,
            "oracle": [True] * 8,
            "skipped": [False, False, False, True] * 2,
            "iou": [0.2, 0.4, 0.9, None, 0.5, 0.5, 0.8, None],
            "dice": [0.1, 0.2, 0.3, None] * 2,
            "precision": [1.0, 1.0, 1.0, None] * 2,
            "recall": [0.0, 0.5, 1.0, None] * 2,
        }
    )
    summary = summarize(table).to_dicts()
    assert [(r["model"], r["views"], r["skipped"]) for r in summary] == [
        ("pretrained", 3, 1),
        ("run", 3, 1),
    ]
    pretrained = summary[0]
    assert pretrained["iou_mean"] == pytest.approx(0.5)
    assert pretrained["iou_median"] == pytest.approx(0.4)
    assert pretrained["iou_std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert summary[1]["iou_mean"] == pytest.approx(0.6)
