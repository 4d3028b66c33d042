"""`report`: an evaluation (per-view metrics table) -> report.md with its figures beside it.

Given a cache and runs, `run_report` evaluates them first (reusing a complete, matching
evaluation), so it is the one command to run after `train`. The report holds: the headline
(the prompt-free result, the best oracle prompt, the study's table per prompt, with 95%
intervals and paired tests), the prompt strategies side by side, the data (audit, splits,
cache), metric histograms, training curves, the failure analysis (worst, typical and best
views; views most helped and hurt by fine-tuning; IoU by water fraction, image size and audit
finding; views every prompt fails), the time each step took, and the configuration in an
appendix. Figures go to `OUT/figures/`; `html` makes report.html of it.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import config_problems
from floodcache.evaluate.table import load_evaluation, load_masks
from floodcache.report import failures, headline, html, markdown, sections
from floodcache.report.config import ReportConfig
from floodcache.report.material import Material, ReportResult
from floodcache.sam.checkpoints import RANDOM_WEIGHTS
from floodcache.train.runs import PRETRAINED, DecoderModel, describe_run, pretrained, read_history
from floodcache.utils import outputs
from floodcache.utils.atomic import write_whole
from floodcache.utils.program import command, option, typed


def run_report(config: ReportConfig) -> ReportResult:
    """Evaluate when given a cache (reusing a matching evaluation), then write report.md.

    What it says of the data comes from the audit recorded in the cache when it was embedded.
    """
    metrics_dir = config.metrics_folder
    earlier_figures = claim_report_folder(config.folder)
    if config.evaluate is not None:
        from floodcache.evaluate.evaluate import run_evaluate  # torch: only to evaluate

        result = run_evaluate(replace(config.evaluate, out=metrics_dir))
        table, metadata, reused = result.table, result.metadata, result.reused
        cache_path = Path(config.evaluate.cache)
    else:
        (table, metadata), reused = load_evaluation(metrics_dir), True
        cache_path = Path(metadata["cache"])
    start = time.perf_counter()  # the report's own time: the evaluation has its own row
    with _open_cache(cache_path, metadata) as cache:
        models, masks = _models(cache, metadata), load_masks(metrics_dir)
        audit = cache.config.get("audit")  # None: embedded before the audit was recorded
        material = Material(config, cache, table, metadata, models, audit, masks)
        lines = _header(material, metrics_dir)
        for section in SECTIONS:
            lines += ["", *section(material)]
        lines += ["", *_timings(material, reused, time.perf_counter() - start)]
        lines += ["", *sections.appendix(material)]
    report = config.folder / "report.md"
    write_whole(report, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    _remove_stale_figures(config.folder, earlier_figures, material.figures)
    page = html.write_html(report, material.figures) if config.html else None
    if not config.html:
        html.remove_stale_page(report)
    return ReportResult(report, material.figures, metrics_dir, reused, page)


SECTIONS = (headline.headline_section, *sections.SECTIONS, failures.failures_section)


_FIGURE_LINK = re.compile(r"\]\((figures/[^)\s]+)\)")
_TITLE = "# floodcache report"


def claim_report_folder(out: Path, option: str = "--out") -> set[Path]:
    """The figures the reports in `out` wrote (resolved), after refusing a folder that holds
    anything else: a report.md that is not one, or a file no report wrote (in figures/ too),
    is the user's, and the report would replace or remove it."""
    earlier = out / "report.md"
    text = earlier.read_text(errors="replace") if earlier.is_file() else ""
    listed = out / outputs.FIGURES_WRITTEN
    names = listed.read_text(errors="replace").splitlines() if listed.is_file() else []
    folder = (out / outputs.FIGURES).resolve()
    linked = [unquote(link) for link in _FIGURE_LINK.findall(text)]
    written = {(out / path).resolve() for path in linked} | {folder / name for name in names}
    figures = {path for path in written if path.parent == folder}  # never a file elsewhere

    def ours(path: Path) -> bool:
        if path.as_posix() == earlier.name:
            return text.startswith(_TITLE)
        if path.parts[0] == outputs.FIGURES:
            return (out / path).resolve() in figures
        return path.as_posix() in outputs.REPORT_FILES

    outputs.refuse_foreign(out, ours, option)
    return figures


def _remove_stale_figures(out: Path, earlier: set[Path], written: list[Path]) -> None:
    """Remove the figures the earlier reports wrote that this one does not show (other
    prompts, models or layouts), so that figures/ and report.html hold the same."""
    for path in earlier - {path.resolve() for path in written}:
        path.unlink(missing_ok=True)
    names = "".join(f"{path.name}\n" for path in written)
    write_whole(out / outputs.FIGURES_WRITTEN, lambda tmp: tmp.write_text(names))


def _open_cache(path: Path, metadata: dict) -> Cache:
    if not path.exists():
        raise FileNotFoundError(
            f"the evaluation's cache {path} is gone: pass --cache FILE.h5 (the same cache)"
        )
    cache = Cache.open(path)
    if cache.fingerprint != metadata["identity"]["cache_fingerprint"]:
        cache.close()
        raise CacheError(
            f"{path} is not the cache this evaluation was made from (fingerprints differ): "
            "pass the right --cache, or evaluate again with --overwrite"
        )
    edited = config_problems(cache)
    if edited:
        cache.close()
        raise CacheError(
            f"{path}: {edited[0]}: the report would repeat what is not so. "
            f"{command('verify', option('cache'), path)} lists every problem; rebuild it with "
            f"{command('embed', option('overwrite'), '...')}"
        )
    return cache


def _models(cache: Cache, metadata: dict) -> list[DecoderModel]:
    """The evaluated decoders, checked to be unchanged since the evaluation."""
    models = []
    for name, info in metadata["models"].items():
        model = pretrained(cache) if info["run"] is None else describe_run(Path(info["run"]))
        if model.sha256 != info["decoder_sha256"]:
            again = command(
                "report", option("cache"), "...", option("decoder"), "...", option("overwrite")
            )
            raise ValueError(
                f"{info['run'] or name}'s decoder changed since the evaluation: evaluate again "
                f"({again})"
            )
        models.append(model)
    return models


def _header(material: Material, metrics_dir: Path) -> list[str]:
    meta = material.metadata
    lines = ["# floodcache report: pretrained vs fine-tuned SAM mask decoder", ""]
    if meta["checkpoint_sha256"] == RANDOM_WEIGHTS:
        lines += [
            "> **WARNING: RANDOM WEIGHTS. EVERY NUMBER IN THIS REPORT IS MEANINGLESS.** The cache",
            "> was embedded with an untrained SAM (`--random-weights`): this report only shows",
            "> that the pipeline runs. Embed with a real checkpoint for numbers that mean",
            "> anything.",
            "",
        ]
    table_link = material.relative(metrics_dir / "metrics.csv")
    runs = material.runs
    # counted in the table, not taken from evaluation.json: an edited count is not repeated
    views = material.table.filter(pl.col("model") == PRETRAINED)["row"].n_unique()
    lines += [
        f"Split {markdown.code(meta['identity']['split'])}: {views} views, each "
        f"evaluated with every prompt strategy and every model: `{PRETRAINED}` (the decoder "
        "of SAM's checkpoint)"
        + "".join(
            f", {markdown.code(m.name)} "
            f"(fine-tuned on {markdown.text(', '.join(m.trained_prompts))})"
            for m in runs
        )
        + ".",
        "",
        "Prompts marked * are oracle prompts: made from the ground truth, they measure SAM with a "
        "perfect annotator, not a deployed system; only `none` needs no ground truth. An oracle "
        "prompt does not exist for a view without water: such views are *skipped* (counted, "
        "left out of every mean). Empty denominators: a metric is 1 when prediction and truth "
        "are both empty, else 0. Metrics are computed at the original image resolution.",
        "",
        f"Per-view table: {markdown.link(table_link, table_link)} (also Parquet), "
        "with each view's exact prompt in original-image pixels.",
        "",
        _explore_line(material, metrics_dir),
    ]
    return lines


def _explore_line(material: Material, metrics_dir: Path) -> str:
    """How to open this evaluation in the explorer: a command to paste in the report's folder,
    paths relative to it and quoted (a report names no absolute path: it is sent around)."""
    cache = shlex.quote(material.relative(material.cache.path))
    command = typed(
        "explore", "--cache", cache, "--eval", shlex.quote(material.relative(metrics_dir))
    )
    return (
        f"Every view, both models and prompts of your own, on a page of this machine, from this "
        f"folder: {markdown.code(command)} (then open the address it prints)."
    )


def _timings(material: Material, reused: bool, report_seconds: float) -> list[str]:
    config = material.cache.config
    embed = config.get("embed_seconds")
    views = len(material.cache)
    rows = [
        [
            "embed",
            f"{embed:.1f}" if embed is not None else "not recorded",
            f"{views} views, the run that completed the cache",
        ],
    ]
    for model in material.runs:
        history = read_history(model.folder)
        epochs = f"{history.height} epoch" + ("s" if history.height != 1 else "")
        seconds = f"{history['seconds'].sum():.1f}"
        rows.append([f"train {markdown.code(model.name)}", seconds, epochs])
    seconds = material.metadata["seconds"]
    per_model = ", ".join(
        f"{markdown.text(name)} {s:.1f} s" for name, s in seconds["per_model"].items()
    )
    detail = f"decoding: {per_model}" + ("; made earlier and reused here" if reused else "")
    rows.append(["evaluate", f"{seconds['total']:.1f}", detail])
    rows.append(["report", f"{report_seconds:.1f}", "tables, figures, galleries; not evaluate"])
    return ["## Timings", "", *markdown.table(["step", "seconds", "detail"], rows)]
