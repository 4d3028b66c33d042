"""Failure by cause: the bins of water and size, the audit's findings per image, and the views
every prompt fails."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl

from floodcache.data import audit_record
from floodcache.report import failures
from tests.helpers import expected_interval


def test_water_is_binned_in_percent_with_dry_views_apart():
    values = pl.Series([0.0, 0.01, 9.99, 10.0, 45.0, 60.0, 100.0])
    labels = failures.bin_labels(values, failures.WATER_EDGES, "%", open_top=False)
    assert labels.to_list() == ["0%", "0–10%", "0–10%", "10–30%", "30–60%", "60–100%", "60–100%"]
    assert failures.bin_order(failures.WATER_EDGES, "%", open_top=False) == [
        "0%",
        "0–10%",
        "10–30%",
        "30–60%",
        "60–100%",
    ]


def test_image_size_bins_are_open_above():
    values = pl.Series([0.1, 0.25, 2.9, 3.0, 18.0])
    labels = failures.bin_labels(values, failures.SIZE_EDGES, " MP", open_top=True)
    assert labels.to_list() == ["0–0.25 MP", "0.25–1 MP", "1–3 MP", ">= 3 MP", ">= 3 MP"]
    assert failures.bin_order(failures.SIZE_EDGES, " MP", True)[-1] == ">= 3 MP"


def test_the_audits_findings_are_named_per_image(zoo_report):
    recorded = audit_record.record_of(zoo_report, len(zoo_report.usable))
    found = failures.findings_of(SimpleNamespace(audit=recorded))
    assert found["exif"] == ["EXIF-rotated"]
    assert found["rgba"] == found["palette"] == found["cmyk"] == ["converted"]
    assert found["dup_a"] == found["dup_b"] == ["duplicate image"]
    assert found["jpeg_as_png"] == ["extension ≠ format"]
    assert "rgb_mask" not in found  # its mask was converted, not its image
    assert "ok" not in found and "grey_mask" not in found


def _views(ious: dict[tuple[str, str, int], float]) -> pl.DataFrame:
    rows = [
        {"model": m, "prompt": p, "row": row, "image_id": f"img{row}", "view": 0}
        | {"iou": iou, "water_percent": 20.0 + row, "megapixels": 0.5, "group": f"g{row % 2}"}
        for (m, p, row), iou in ious.items()
    ]
    return pl.DataFrame(rows)


def test_a_view_is_listed_when_every_model_fails_with_every_prompt():
    ious = {
        (m, p, row): 0.2
        for m in ("pretrained", "mix")
        for p in ("box", "none")
        for row in (0, 1, 2)
    }
    ious[("mix", "none", 1)] = 0.8  # one prompt of one model saves view 1
    ious[("pretrained", "box", 2)] = 0.4
    lines = failures.every_prompt_fails(SimpleNamespace(audit=None), _views(ious))
    text = "\n".join(lines)
    assert "2 of 3 views" in text
    assert "| img0 | 0 | 20.0 | 0.50 | – | 0.200 |" in text
    assert "| img2 | 0 | 22.0 | 0.50 | – | 0.400 |" in text
    assert "img1" not in text
    assert text.index("img0") < text.index("img2")  # lowest best IoU first


def test_a_cause_table_cell_is_its_groups_mean_interval_and_count():
    ious = {("pretrained", "box", row): row / 30 for row in range(24)}  # 12 views a group
    table = _views(ious)
    material = SimpleNamespace(prompts=["box"], names=["pretrained"])
    lines = failures.cause_table(material, table, "group", ["g0", "g1", "g2"])
    assert lines[0] == "| model | prompt | g0 | g1 |"  # a group without views is left out
    even = table.filter(pl.col("group") == "g0")["iou"].to_numpy()
    low, high = expected_interval(even)
    assert f"| `pretrained` | `box`* | {even.mean():.3f} [{low:.3f}, {high:.3f}] (12) |" in lines[2]
