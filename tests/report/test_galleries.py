"""Which views a gallery shows: worst, typical (near the median) and best, with no image
repeated across a model's galleries while the split has others."""

from __future__ import annotations

import numpy as np
import polars as pl

from floodcache.report.galleries import choose_views


def _rows(ious, images=None) -> pl.DataFrame:
    """One model's evaluated rows for one prompt: view `row` of image `images[row]`."""
    images = images or [f"img{k}" for k in range(len(ious))]
    return pl.DataFrame({"row": range(len(ious)), "image_id": images, "iou": ious})


def test_the_worst_the_typical_and_the_best_views():
    ious = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.45, 0.6, 0.05, 0.95, 0.4]
    choices = choose_views(_rows(ious), 1, set())
    assert [c.kind for c in choices] == ["worst", "typical", "best"]
    worst, typical, best = (c.record["iou"] for c in choices)
    assert (worst, best) == (min(ious), max(ious))
    assert abs(typical - np.median(ious)) == min(abs(v - np.median(ious)) for v in ious)
    assert [(c.rank, c.of) for c in choices] == [(1, 12), (6, 12), (12, 12)]


def test_several_of_each_kind_in_order():
    ious = list(np.linspace(0, 1, 20))
    choices = choose_views(_rows(ious), 2, set())
    kinds = {
        kind: [c.record["iou"] for c in choices if c.kind == kind] for kind in ("worst", "best")
    }
    assert kinds == {"worst": ious[:2], "best": ious[::-1][:2]}
    typical = [c.record["iou"] for c in choices if c.kind == "typical"]
    assert len(typical) == 2 and all(0.35 < v < 0.65 for v in typical)


def test_a_models_galleries_show_other_images_while_there_are_others():
    """Three prompts rank the same 24 images alike: each gallery still shows new images,
    taking the next worst, typical and best, and never one outside its IoU band."""
    rng = np.random.default_rng(0)
    base = rng.random(24)
    shown: set[str] = set()
    seen = []
    for _ in range(3):
        rows = _rows(list(np.clip(base + rng.normal(0, 0.01, 24), 0, 1)))
        choices = choose_views(rows, 1, shown)
        seen += [c.record["image_id"] for c in choices]
        ranks = {c.kind: c.rank for c in choices}
        assert ranks["worst"] <= 6 and ranks["best"] >= 19 and 7 <= ranks["typical"] <= 18
    assert len(seen) == len(set(seen)) == 9 and shown == set(seen)


def test_images_repeat_only_when_the_band_has_no_other():
    rows = _rows([0.1, 0.5, 0.9, 0.2, 0.6, 0.8, 0.45])
    shown = {f"img{k}" for k in range(7)}  # every image shown already
    choices = choose_views(rows, 1, shown)
    assert [c.record["iou"] for c in choices] == [0.1, 0.5, 0.9]  # the true worst, typical, best


def test_views_of_one_image_count_as_that_image():
    """Augmented views of a shown image are passed over for another image's view."""
    rows = _rows(
        [0.1, 0.15, 0.5, 0.55, 0.9, 0.95, 0.3, 0.7], ["a", "b", "c", "d", "e", "f", "a", "f"]
    )
    choices = choose_views(rows, 1, {"a", "f"})
    assert [c.record["image_id"] for c in choices] == ["b", "c", "e"]


def test_a_gallery_shows_one_view_per_image_while_there_are_others():
    """Image `a` has the worst view and the median one: the gallery shows its worst view and
    the next nearest the median, of another image, as typical."""
    ious = [0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.7, 0.9, 0.95]
    choices = choose_views(_rows(ious, ["a", "b", "g", "c", "a", "d", "h", "e", "f"]), 1, set())
    assert [c.record["image_id"] for c in choices] == ["a", "c", "f"]


def test_a_small_split_shows_each_view_once():
    for count in (1, 2, 3, 5):
        choices = choose_views(_rows(list(np.linspace(0.1, 0.9, count))), 2, set())
        rows = [c.record["row"] for c in choices]
        assert len(rows) == len(set(rows)) == min(count, 6)
    assert choose_views(_rows([]), 1, set()) == []
