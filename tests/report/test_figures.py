"""The report's charts: opaque white (readable in a dark viewer), counts on integer axes, no
model hidden behind another, means with their intervals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image

from floodcache.report import figures
from floodcache.report.statistics import bootstrap

MODELS = ["pretrained", "mix"]


def _table(views: int = 7) -> pl.DataFrame:
    """An evaluation-like table: two models, two prompts, `views` views each."""
    rng = np.random.default_rng(3)
    rows = []
    for model in MODELS:
        for prompt, oracle in (("box", True), ("none", False)):
            for row in range(views):
                iou = float(rng.random())
                rows.append(
                    {"model": model, "prompt": prompt, "oracle": oracle, "skipped": False}
                    | {"row": row, "iou": iou, "dice": iou, "water_percent": 10.0 * row}
                    | {"bin": "low" if row < 3 else "high"}
                )
    return pl.DataFrame(rows)


@pytest.fixture
def captured(monkeypatch):
    """Each figure as it is saved, to read what it drew."""
    saved = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (saved.append(fig), save(fig, path))[1])
    return saved


def test_histograms_count_in_whole_views_and_show_both_models(tmp_path, captured):
    path = figures.metric_histograms(_table(), "iou", MODELS, tmp_path / "hist.png")
    (figure,) = captured
    for ax in figure.axes:
        if not ax.get_visible():
            continue
        ticks = ax.get_yticks()
        assert np.allclose(ticks, np.round(ticks))
        lefts = [[bar.get_x() for bar in container] for container in ax.containers]
        assert len(lefts) == 2 and not set(lefts[0]) & set(lefts[1])  # side by side
    _assert_opaque_white(path)


def test_iou_versus_a_binned_value_marks_each_bins_mean_and_interval(tmp_path, captured):
    table = _table()
    path = tmp_path / "versus.png"
    scale = figures.Scale("water_percent", "bin", (30.0,), "water (%)")
    figures.versus(table, scale, MODELS, path)
    (figure,) = captured
    ax = figure.axes[0]
    assert ax.get_xlim() == (0, 100)
    rows = table.filter((pl.col("prompt") == "box") & (pl.col("model") == "pretrained"))
    expected = {
        round(bootstrap(rows.filter(pl.col("bin") == b)["iou"].to_numpy()).mean, 9)
        for b in ("low", "high")
    }
    drawn = {round(float(c.lines[0].get_ydata()[0]), 9) for c in ax.containers[:2]}
    assert drawn == expected
    _assert_opaque_white(path)


def test_mean_bars_show_the_interval(tmp_path, captured):
    means = pl.DataFrame(
        [
            {"model": m, "prompt": "box", "oracle": True, "metric": metric}
            | {"mean": 0.5, "low": 0.4, "high": 0.7}
            for m in MODELS
            for metric in ("iou", "dice")
        ]
    )
    path = figures.mean_bars(means, MODELS, tmp_path / "means.png")
    (figure,) = captured
    error_bars = [c for c in figure.axes[0].containers if hasattr(c, "has_yerr") and c.has_yerr]
    low, high = error_bars[0].lines[2][0].get_segments()[0][:, 1]
    assert (round(low, 6), round(high, 6)) == (0.4, 0.7)
    _assert_opaque_white(path)


def _assert_opaque_white(path) -> None:
    with Image.open(path) as image:
        rgba = np.asarray(image.convert("RGBA"))
    assert rgba[..., 3].min() == 255  # no transparent pixel for a dark viewer to show through
    assert tuple(rgba[0, 0, :3]) == (255, 255, 255)


def test_a_log_axis_labels_only_its_decades_so_that_no_labels_overlap(tmp_path, captured):
    """Image sizes from 0.2 to 0.9 megapixels: matplotlib's own minor labels (2x10^-1,
    3x10^-1...) ran into each other; only the major ticks carry a label."""
    table = _table().with_columns(megapixels=0.2 + 0.1 * pl.col("row"))
    scale = figures.Scale("megapixels", "bin", (), "megapixels", log=True)
    figures.versus(table, scale, MODELS, tmp_path / "v.png")
    (figure,) = captured
    ax = figure.axes[0]
    figure.canvas.draw()
    minor = [label.get_text() for label in ax.xaxis.get_minorticklabels()]
    assert minor and not any(minor), minor
    assert any(label.get_text() for label in ax.xaxis.get_majorticklabels())


def test_few_views_get_no_error_bar(tmp_path, captured):
    """Below MIN_INTERVAL_VIEWS views a bin's mean is drawn without an interval, as the tables
    show none."""
    scale = figures.Scale("water_percent", "bin", (30.0,), "water (%)")
    figures.versus(_table(), scale, MODELS, tmp_path / "v.png")
    (figure,) = captured
    for container in figure.axes[0].containers[:2]:
        (bar,) = container.lines[2]
        assert all(np.ptp(segment[:, 1]) == 0 for segment in bar.get_segments())
