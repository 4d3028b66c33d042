"""`report`: every section with its figures, made after `train` from a cache and its runs."""

from __future__ import annotations

import re

import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from floodcache.cache.reader import Cache
from floodcache.train.runs import PRETRAINED

SECTIONS = [
    "## Data",
    "### Audit",
    "### Splits",
    "### Cache",
    "## Results per prompt",
    "### `point`*",
    "### `box`*",
    "### `none`",
    "## Prompt strategies side by side",
    "## Distributions",
    "## Training",
    "## Failure analysis",
    "### Worst views per model and prompt",
    "### Where fine-tuning helped and hurt most",
    "### IoU against water fraction and image size",
    "## Timings",
]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(train_cache, finetuned_run, finetuned_evaluation, tmp_path_factory):
    """`report` run after `train`, with --metrics pointing at a finished, matching evaluation."""
    metrics = finetuned_evaluation[0].out
    out = tmp_path_factory.mktemp("report")
    evaluation_written = (metrics / "evaluation.json").stat().st_mtime_ns
    models = ["--cache", str(train_cache), "--decoder", str(finetuned_run)]
    models += ["--eval-prompts", "point,box,none", "--split", "val"]
    evaluated = CliRunner().invoke(main, ["evaluate", *models, "--out", str(metrics)])
    assert evaluated.exit_code == 0, evaluated.output
    command = ["report", *models, "--gallery", "2", "--metrics", str(metrics), "--out", str(out)]
    reported = CliRunner().invoke(main, command)
    assert reported.exit_code == 0, reported.output
    reused = (metrics / "evaluation.json").stat().st_mtime_ns == evaluation_written
    return out, (out / "report.md").read_text(), reused, evaluated.output


def test_evaluate_and_report_reuse_the_matching_evaluation(report):
    *_, reused, evaluate_output = report
    assert reused
    assert "evaluation kept (it matches)" in evaluate_output
    assert "mean IoU per prompt" in evaluate_output


def test_report_has_every_section_in_order(report, train_cache):
    text = report[1]
    positions = [text.find("\n" + heading) for heading in SECTIONS]
    assert -1 not in positions, [h for h, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert "RANDOM WEIGHTS" not in text  # a real checkpoint file built train_cache
    with Cache.open(train_cache) as cache:
        assert cache.fingerprint in text
    assert "| train | 4 | 8 |" in text and "| val | 3 | 3 |" in text
    assert "7 pairs found, 7 usable" in text  # the audit summary


def test_every_figure_is_written_and_linked(report, finetuned_run):
    out, text = report[:2]
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", text)
    run = finetuned_run.name
    expected = {"means", "training", "iou_vs_water", "iou_vs_size"}
    expected |= {f"hist_{metric}" for metric in ("iou", "dice", "precision", "recall")}
    for prompt in ("point", "box", "none"):
        expected |= {f"worst_{PRETRAINED}_{prompt}", f"worst_{run}_{prompt}"}
        expected.add(f"change_{run}_{prompt}")
    assert {link.removeprefix("figures/").removesuffix(".png") for link in linked} == expected
    for link in linked:
        content = (out / link).read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 5000, link


def test_tables_show_the_evaluated_means(report, finetuned_evaluation, finetuned_run):
    text = report[1]
    table = finetuned_evaluation[1].table
    for model in (PRETRAINED, finetuned_run.name):
        rows = table.filter((pl.col("model") == model) & (pl.col("prompt") == "box"))
        iou = rows["iou"]
        cell = f"{iou.mean():.3f} ± {iou.std():.3f} ({iou.median():.3f})"
        assert f"| {model} | 3 | 0 | {cell} |" in text
    assert "| `point`* | yes |" in text and "| `none` | no |" in text  # oracle marks
    assert re.search(r"\| embed \| \d+\.\d \|", text)  # the cache recorded its embed time
    assert re.search(rf"\| train `{finetuned_run.name}` \| \d+\.\d \| 1 epochs \|", text)


def test_report_from_an_evaluation_folder_alone(report, finetuned_evaluation, tmp_path):
    """Without --cache, the evaluation names its cache; --decoder needs --cache."""
    metrics = str(finetuned_evaluation[0].out)
    refused = CliRunner().invoke(main, ["report", "--metrics", metrics, "--decoder", "x"])
    assert refused.exit_code != 0 and "--decoder needs --cache" in refused.output
    missing = CliRunner().invoke(main, ["report", "--metrics", str(tmp_path)])
    assert missing.exit_code != 0 and "no finished evaluation" in missing.output


def test_a_report_from_an_evaluation_decodes_nothing_again(
    finetuned_evaluation, tmp_path, monkeypatch
):
    """The galleries show the masks the evaluation kept: the decoder never runs."""
    from floodcache.sam import decoder

    def no_decoding(*args, **kwargs):
        raise AssertionError("the report decoded a mask again")

    monkeypatch.setattr(decoder, "decode", no_decoding)
    metrics = finetuned_evaluation[0].out
    result = CliRunner().invoke(main, ["report", "--metrics", str(metrics), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    galleries = list((tmp_path / "figures").glob("worst_*.png"))
    assert galleries and all(path.read_bytes().startswith(PNG_MAGIC) for path in galleries)
