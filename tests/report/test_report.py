"""`report`: every section with its figures, made after `train` from a cache and its runs; its
numbers checked against the evaluation's metrics table."""

from __future__ import annotations

import base64
import errno
import html as html_module
import json
import re
import shlex
import shutil
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from cli import main
from floodcache.cache.format import CONFIG_SHA256
from floodcache.cache.reader import Cache
from floodcache.embed.run import run_embed
from floodcache.report import html, markdown
from floodcache.report.statistics import MIN_INTERVAL_VIEWS
from floodcache.train.runs import PRETRAINED
from tests.helpers import (
    JPEG_MAGIC,
    PNG_MAGIC,
    SIZES,
    embed_config,
    expected_interval,
    expected_p,
    write_dataset,
)

SECTIONS = [
    "## Headline",
    "### `point`*",
    "### `box`*",
    "### `none`",
    "## Prompt strategies side by side",
    "## Data",
    "### Audit",
    "### Splits",
    "### Cache",
    "## Distributions",
    "## Training",
    "## Failure analysis",
    "### Worst, typical and best views per model and prompt",
    "### Where fine-tuning helped and hurt most",
    "### Failure by cause",
    "#### By water fraction",
    "#### By image size",
    "#### By the audit's findings",
    "### Views every prompt fails",
    "## Timings",
    "## Appendix: configuration",
]
NAMES = {"iou": "IoU", "dice": "Dice", "precision": "precision", "recall": "recall"}


@pytest.fixture(scope="module")
def report(train_cache, finetuned_run, finetuned_evaluation, tmp_path_factory):
    """`report --html` run after `train`, with --metrics pointing at a finished, matching
    evaluation."""
    metrics = finetuned_evaluation[0].out
    out = tmp_path_factory.mktemp("report")
    evaluation_written = (metrics / "evaluation.json").stat().st_mtime_ns
    models = ["--cache", str(train_cache), "--decoder", str(finetuned_run)]
    models += ["--eval-prompts", "point,box,none", "--split", "val"]
    evaluated = CliRunner().invoke(main, ["evaluate", *models, "--out", str(metrics)])
    assert evaluated.exit_code == 0, evaluated.output
    command = ["report", *models, "--metrics", str(metrics), "--out", str(out), "--html"]
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


def test_the_configuration_is_a_collapsed_appendix_at_the_end(report):
    text = report[1]
    data = text[text.index("\n## Data") : text.index("\n## Distributions")]
    assert "```json" not in data and '"identity"' not in data
    appendix = text[text.index("\n## Appendix: configuration") :]
    assert appendix.count("<details>") == 1 and appendix.rstrip().endswith("</details>")
    assert '"augment": 1' in appendix and '"cache_fingerprint"' in appendix


def _linked(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def test_every_figure_is_written_and_linked(report, finetuned_run):
    out, text = report[:2]
    run = finetuned_run.name
    expected = {"means", "training", "iou_vs_water", "iou_vs_size"}
    expected |= {f"hist_{metric}" for metric in ("iou", "dice", "precision", "recall")}
    for prompt in ("point", "box", "none"):
        expected |= {f"views_{PRETRAINED}_{prompt}", f"views_{run}_{prompt}"}
        expected.add(f"change_{run}_{prompt}")
    linked = _linked(text)
    assert {re.sub(r"^figures/|\.(png|jpg)$", "", link) for link in linked} == expected
    for link in linked:
        content = (out / link).read_bytes()
        magic = JPEG_MAGIC if link.endswith(".jpg") else PNG_MAGIC
        assert content.startswith(magic) and len(content) > 5000, link


def test_the_report_renders_in_a_browser_with_every_figure(report):
    """report.md through a CommonMark renderer: every image resolves to a figure on disk,
    every figure is shown, tables and the appendix's <details> are HTML; report.html carries
    each figure inside it, byte for byte."""
    out, text = report[:2]
    body = html.render(text)
    sources = html.image_sources(body)
    assert sources and all((out / source).is_file() for source in sources)
    assert {out / source for source in sources} == set((out / "figures").iterdir())
    assert body.count("<table>") >= 10 and "<details>" in body and "<summary>" in body
    assert "|" not in re.sub(r"<pre>.*?</pre>|<code>.*?</code>", "", body, flags=re.S)

    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<details>" in page
    inline = html.image_sources(page)
    assert len(inline) == len(sources)
    for source, data_url in zip(sources, inline, strict=True):
        kind, data = data_url.split(",", 1)
        assert kind in ("data:image/png;base64", "data:image/jpeg;base64")
        # each figure as report.html holds it: no wider than the page, never larger than its file
        assert base64.b64decode(data) == html.compact(out / source)
        assert len(base64.b64decode(data)) <= (out / source).stat().st_size


def test_every_link_is_relative_to_the_report_and_resolves(report, finetuned_run, tmp_path):
    out, text = report[:2]
    body = text[: text.index("\n## Appendix")]  # the appendix records paths as given
    links = re.findall(r"\]\(([^)]+)\)", body)
    assert any(link.endswith("metrics.csv") for link in links)
    assert any(link.endswith(finetuned_run.name) for link in links)  # the training folder
    cache = re.search(r"`([^`]+\.h5)` \(from this folder\)", body).group(1)
    assert not cache.startswith("/") and (out / cache).is_file()
    for link in links:
        assert not link.startswith("/") and (out / link).exists(), link
    assert str(out.parent) not in body and str(finetuned_run) not in body


def _per_view(table: pl.DataFrame, model: str, prompt: str, metric: str) -> np.ndarray:
    rows = table.filter((pl.col("model") == model) & (pl.col("prompt") == prompt))
    return rows.filter(~pl.col("skipped")).sort("row")[metric].to_numpy()


def _bracket(values: np.ndarray, sign: str = "") -> str:
    """The interval as the report writes it: none on fewer than MIN_INTERVAL_VIEWS views."""
    if len(values) < MIN_INTERVAL_VIEWS:
        return f"[{len(values)} view{'' if len(values) == 1 else 's'}: no interval]"
    low, high = expected_interval(values)
    return f"[{low:{sign}.3f}, {high:{sign}.3f}]"


def _mean_cell(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f} {_bracket(values)}"


def _signed(values: np.ndarray) -> str:
    return f"{values.mean():+.3f} {_bracket(values, '+')}"


def test_the_study_tables_are_the_metrics_tables_numbers(
    report, finetuned_evaluation, finetuned_run
):
    """Per prompt and metric: mean ± std [95% interval] of both models, the paired change (the
    mean of per-view differences, with its interval), the relative change and Wilcoxon's p."""
    text, table = report[1], finetuned_evaluation[1].table
    for prompt in ("point", "box", "none"):
        section = text[text.index(f"\n### `{prompt}`") :]
        section = section[: section.index("\n\n### ") if "\n\n### " in section else None]
        assert "Evaluated on **only 3 views: too few (< 20) for a claim**." in section
        for metric, name in NAMES.items():
            before = _per_view(table, PRETRAINED, prompt, metric)
            after = _per_view(table, finetuned_run.name, prompt, metric)
            relative = f"{100 * (after.mean() - before.mean()) / before.mean():+.1f} %"
            cells = [name, _mean_cell(before), _mean_cell(after), _signed(after - before)]
            row = "| " + " | ".join(cells + [relative, expected_p(before, after)]) + " |"
            assert row in section, (row, section)


def test_the_headline_states_the_prompt_free_and_best_oracle_results(
    report, finetuned_evaluation, finetuned_run
):
    text, table = report[1], finetuned_evaluation[1].table
    headline = text[text.index("## Headline") : text.index("\n### ")]
    run = finetuned_run.name

    def claim(prompt: str) -> str:
        before = _per_view(table, PRETRAINED, prompt, "iou")
        after = _per_view(table, run, prompt, "iou")
        p = expected_p(before, after)
        return (
            f"fine-tuned `{run}` reaches mean IoU {_interval_text(after)} against "
            f"{_interval_text(before)} for `{PRETRAINED}`, a change of {_signed(after - before)} "
            f"per view (Wilcoxon p {p if p.startswith('<') else '= ' + p}); "
            "**only 3 views: too few (< 20) for a claim**."
        )

    deployable, oracle = (line for line in headline.splitlines() if line.startswith("**"))
    assert deployable.startswith("**Deployable (no prompt, `none`") and claim("none") in deployable
    best = max(("point", "box"), key=lambda p: _per_view(table, run, p, "iou").mean())
    assert oracle.startswith(f"**Best oracle prompt:** `{best}`* (") and claim(best) in oracle


def _interval_text(values: np.ndarray) -> str:
    return f"{values.mean():.3f} {_bracket(values)}"


def _prompt_title(prompt: str) -> str:
    return f"`{prompt}`" if prompt == "none" else f"`{prompt}`*"


def _table_rows(section: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows (as cells) of the first markdown table in `section`."""
    lines = section[section.index("\n| ") + 1 :].splitlines()
    table = lines[: next((i for i, line in enumerate(lines) if not line.startswith("|")), None)]
    cells = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table]
    return cells[0], cells[2:]  # cells[1]: the header's separator


def test_the_side_by_side_table_is_the_metrics_tables_numbers(
    report, finetuned_evaluation, finetuned_run
):
    text, table = report[1], finetuned_evaluation[1].table
    section = text[text.index("## Prompt strategies") : text.index("## Data")]
    _, rows = _table_rows(section)
    for prompt in ("point", "box", "none"):
        before, after = (
            _per_view(table, m, prompt, "iou") for m in (PRETRAINED, finetuned_run.name)
        )
        oracle = "no" if prompt == "none" else "yes"
        expected = [_prompt_title(prompt), oracle, "3", _interval_text(before)]
        assert expected + [_interval_text(after), _signed(after - before)] in rows


def test_iou_by_water_fraction_is_the_metrics_tables_numbers(report, finetuned_evaluation):
    """Each cell: the mean IoU [interval] (views) of the views whose water, in percent, falls
    in the column's bin."""
    text, table = report[1], finetuned_evaluation[1].table
    header, rows = _table_rows(text[text.index("#### By water fraction") :])
    bins = {"0%": (0, 0), "0–10%": (0, 10), "10–30%": (10, 30), "30–60%": (30, 60)}
    bins["60–100%"] = (60, 100.1)
    assert header[:2] == ["model", "prompt"] and set(header[2:]) <= set(bins)
    evaluated = table.filter(~pl.col("skipped")).with_columns(
        percent=100 * pl.col("water_fraction")
    )
    assert len(rows) == evaluated.select("model", "prompt").unique().height
    for row in rows:
        model, prompt = row[0].strip("`"), row[1].strip("`*")
        mine = evaluated.filter((pl.col("model") == model) & (pl.col("prompt") == prompt))
        for label, cell in zip(header[2:], row[2:], strict=True):
            low, high = bins[label]
            inside = (
                (pl.col("percent") == 0)
                if label == "0%"
                else (
                    (pl.col("percent") > 0)
                    & (pl.col("percent") >= low)
                    & (pl.col("percent") < high)
                )
            )
            values = mine.filter(inside)["iou"].to_numpy()
            assert cell == (f"{_interval_text(values)} ({len(values)})" if len(values) else "–")


def test_timings_count_each_step_once(report, finetuned_evaluation):
    text, metadata = report[1], finetuned_evaluation[1].metadata
    timings = text[text.index("## Timings") : text.index("## Appendix")]
    assert re.search(r"\| embed \| \d+\.\d \|", timings)  # the cache recorded its embed time
    assert re.search(r"\| train `mix` \| \d+\.\d \| 1 epoch \|", timings)
    evaluate = f"| evaluate | {metadata['seconds']['total']:.1f} |"
    assert timings.count(evaluate) == 1 and "made earlier and reused here" in timings
    assert re.search(
        r"\| report \| \d+\.\d \| tables, figures, galleries; not evaluate \|", timings
    )


def test_the_reports_time_leaves_out_the_evaluations(finetuned_evaluation, tmp_path, monkeypatch):
    """An evaluation that takes 1000 s leaves the report's own time under it."""
    import time

    from floodcache.evaluate import evaluate as evaluate_module
    from floodcache.report.config import ReportConfig
    from floodcache.report.report import run_report

    clock = {"offset": 0.0}
    real_clock, real_evaluate = time.perf_counter, evaluate_module.run_evaluate

    def slow_evaluate(config):
        clock["offset"] += 1000.0
        return real_evaluate(config)

    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + clock["offset"])
    monkeypatch.setattr(evaluate_module, "run_evaluate", slow_evaluate)
    config, result = finetuned_evaluation
    report = ReportConfig(out=tmp_path, metrics=result.out, evaluate=config)
    text = run_report(report).report.read_text()
    seconds = float(re.search(r"\| report \| (\d+\.\d) \|", text).group(1))
    assert clock["offset"] == 1000.0 and seconds < 1000


def test_report_from_an_evaluation_folder_alone(report, finetuned_evaluation, tmp_path):
    """Without --cache, the evaluation names its cache; --decoder needs --cache."""
    metrics = str(finetuned_evaluation[0].out)
    refused = CliRunner().invoke(main, ["report", "--metrics", metrics, "--decoder", "x"])
    assert refused.exit_code != 0 and "--decoder needs --cache" in refused.output
    missing = CliRunner().invoke(main, ["report", "--metrics", str(tmp_path)])
    assert missing.exit_code != 0 and "no finished evaluation" in missing.output


def test_a_full_disk_while_drawing_leaves_no_partial_figure(
    finetuned_evaluation, tmp_path, monkeypatch
):
    """A figure cut short by a full disk left a truncated PNG and a traceback."""
    drawn = []

    def full_disk_at_the_third(fig, target, *args, **kwargs):
        drawn.append(target)
        if len(drawn) < 3:
            return real_savefig(fig, target, *args, **kwargs)
        Path(target).write_bytes(PNG_MAGIC)  # what fitted
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", full_disk_at_the_third)
    out = tmp_path / "report"
    args = ["report", "--metrics", str(finetuned_evaluation[0].out), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    figures = sorted((out / "figures").iterdir())
    assert len(figures) == 2 and all(path.stat().st_size > 5000 for path in figures)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"could not write {out}/figures/" in result.output and "No space" in result.output
    monkeypatch.undo()  # room again: the report it left is its own, and is replaced
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert set((out / "figures").iterdir()) == {out / link for link in _linked(_text(out))}


def _text(out: Path) -> str:
    return (out / "report.md").read_text()


def test_a_folder_holding_the_users_files_is_refused_and_kept(finetuned_evaluation, tmp_path):
    """report --out DIR removed every picture in DIR/figures/ it had not written and
    replaced DIR/report.md, without --overwrite."""
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    holiday = out / "figures" / "holiday.jpg"
    holiday.write_bytes(JPEG_MAGIC + b"the user's photo")
    args = ["report", "--metrics", str(finetuned_evaluation[0].out), "--out", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "holds figures/holiday.jpg" in refused.output
    assert "choose another --out" in refused.output
    holiday.unlink()
    (out / "report.md").write_text("# my notes\n")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "holds report.md" in refused.output
    assert (out / "report.md").read_text() == "# my notes\n"
    assert sorted(p.name for p in out.rglob("*")) == ["figures", "report.md"]


def test_a_report_from_an_evaluation_decodes_nothing_again(
    finetuned_evaluation, tmp_path, monkeypatch
):
    """The galleries show the masks the evaluation kept: the decoder never runs. The figures
    an earlier report left in figures/ are gone: report.html shows what figures/ holds."""
    from floodcache.sam import decoder

    def no_decoding(*args, **kwargs):
        raise AssertionError("the report decoded a mask again")

    monkeypatch.setattr(decoder, "decode", no_decoding)
    metrics = finetuned_evaluation[0].out
    stale = tmp_path / "figures" / "worst_pretrained_box.png"  # an earlier report's figure
    stale.parent.mkdir()
    stale.write_bytes(PNG_MAGIC)
    (tmp_path / ".figures-written").write_text(f"{stale.name}\n")  # as that report recorded it
    result = CliRunner().invoke(main, ["report", "--metrics", str(metrics), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    galleries = list((tmp_path / "figures").glob("views_*.jpg"))
    assert galleries and all(path.read_bytes().startswith(JPEG_MAGIC) for path in galleries)
    assert not stale.exists()  # figures/ holds this report's figures alone


def test_an_edited_view_count_in_evaluation_json_is_not_repeated(finetuned_evaluation, tmp_path):
    metrics = tmp_path / "evaluation"
    shutil.copytree(finetuned_evaluation[0].out, metrics)
    metadata = json.loads((metrics / "evaluation.json").read_text())
    views = metadata["views"]
    metadata["views"] = 999
    (metrics / "evaluation.json").write_text(json.dumps(metadata))
    result = CliRunner().invoke(main, ["report", "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    text = (metrics / "report.md").read_text()
    assert "999 views" not in text and f": {views} views, each evaluated" in text


def test_report_says_how_to_explore_its_evaluation(report, train_cache, monkeypatch):
    from floodcache.explore import run as explore_run

    text = report[1]
    command = re.search(r"`((?:floodcache|python cli\.py) explore [^`]+)`", text).group(1)
    served = []
    monkeypatch.setattr(explore_run, "run_explore", lambda config, announce: served.append(config))
    words = shlex.split(command)
    monkeypatch.chdir(report[0])  # the command is given for the report's folder
    ran = CliRunner().invoke(main, words[words.index("explore") :])
    assert ran.exit_code == 0, ran.output
    assert Path(served[0].cache).resolve() == Path(train_cache).resolve()
    assert (served[0].evaluation / "metrics.parquet").is_file()


@pytest.mark.parametrize("text", ["plain", "a`b", "`start", "a``b`"])
def test_a_code_span_shows_any_text_as_it_is(text):
    import markdown_it

    rendered = markdown_it.MarkdownIt().renderInline(markdown.code(text))
    assert rendered == f"<code>{html_module.escape(text, quote=False)}</code>"


def test_the_report_says_what_the_cache_recorded_of_its_data(
    tiny_checkpoint, tmp_path, monkeypatch
):
    """The data folder was named relative to where embed ran; report runs elsewhere, where the
    same name is other data (it once said "290 pairs found" for a 12-image cache). A cache
    written before the audit was recorded gets a report that says so, no audit of a path."""
    write_dataset(tmp_path / "embedded_here" / "data", SIZES[:5])
    write_dataset(tmp_path / "reported_here" / "data", SIZES[:7])
    cache = tmp_path / "five.h5"
    monkeypatch.chdir(tmp_path / "embedded_here")
    run_embed(embed_config(Path("data"), tiny_checkpoint, cache, augment=0))
    monkeypatch.chdir(tmp_path / "reported_here")
    common = ["report", "--cache", str(cache), "--eval-prompts", "box", "--split", "train"]
    reported = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "report")])
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "5 pairs found, 5 usable" in text and "7 pairs" not in text

    with h5py.File(cache, "r+") as f:  # as embedded before the audit was recorded
        config = json.loads(f.attrs["config"])
        del config["audit"], f.attrs[CONFIG_SHA256]
        f.attrs["config"] = json.dumps(config, sort_keys=True)
    reported = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "older")])
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "older" / "report.md").read_text()
    assert "the audit is not recorded in this cache" in text and "pairs found" not in text
    assert "The cache records no audit of its data" in text


def test_a_report_refuses_a_cache_whose_recorded_settings_were_edited(train_cache, tmp_path):
    edited = tmp_path / "edited.h5"
    shutil.copy(train_cache, edited)
    with h5py.File(edited, "r+") as f:
        config = json.loads(f.attrs["config"])
        config["run"]["data_dir"] = "/somewhere/else"
        f.attrs["config"] = json.dumps(config, sort_keys=True)
    command = ["report", "--cache", str(edited), "--eval-prompts", "box", "--split", "val"]
    reported = CliRunner().invoke(main, [*command, "--out", str(tmp_path / "report")])
    assert reported.exit_code != 0
    assert "does not match its sha256 (edited)" in reported.output
    assert not (tmp_path / "report" / "report.md").exists()
