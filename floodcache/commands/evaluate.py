"""`evaluate` and `report`: pretrained vs fine-tuned SAM on every prompt, and report.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from floodcache.commands.common import DEVICE_HELP, PATH, option, user_errors, with_options
from floodcache.evaluate.config import EvaluateConfig
from floodcache.report.config import ReportConfig
from floodcache.settings import SPLITS

EVAL_PROMPTS_HELP = "The evaluated prompt strategies, comma-separated: each is reported."


def evaluation_options(command: Callable) -> Callable:
    """The options of an evaluation, shared by evaluate and report."""
    options = [
        click.option(
            "--decoder",
            "decoders",
            multiple=True,
            type=PATH,
            help="A fine-tuned run folder (from `train`); repeat for several.",
        ),
        option("--eval-prompts", source=EvaluateConfig, help=EVAL_PROMPTS_HELP),
        option(
            "--split",
            source=EvaluateConfig,
            type=click.Choice(SPLITS),
            help="Which views to evaluate.",
        ),
        option("--seed", source=EvaluateConfig, type=int, help="Seed of the prompts."),
        option(
            "--points",
            source=EvaluateConfig,
            type=click.IntRange(1),
            help="k positive and k negative points for the `points` strategy.",
        ),
        option(
            "--batch-size",
            source=EvaluateConfig,
            type=click.IntRange(1),
            help="Views per decoder call.",
        ),
        click.option("--device", help=DEVICE_HELP),
        click.option(
            "--overwrite",
            is_flag=True,
            help="Replace a finished evaluation made with other settings (a matching one is "
            "always reused).",
        ),
    ]
    return with_options(command, options)


@click.command()
@option("--cache", source=EvaluateConfig, type=PATH, help="The cache written by `embed`.")
@evaluation_options
@click.option("--out", type=PATH, help="Folder [default: reports/<cache name>].")
@user_errors
def evaluate(**options: Any) -> None:
    """Evaluate the pretrained decoder and each --decoder on every view of a split.

    Writes metrics.parquet and metrics.csv (one row per model, prompt and view, with the
    exact prompt in original-image pixels) and evaluation.json to --out.

    Example: python cli.py evaluate --cache cache/flood.h5 --decoder runs/point+box+none
    """
    from floodcache.evaluate.evaluate import run_evaluate
    from floodcache.evaluate.metrics import summarize

    result = run_evaluate(EvaluateConfig(**options))
    means = summarize(result.table).pivot("model", index="prompt", values="iou_mean")
    click.echo(f"mean IoU per prompt (rows) and model (columns):\n{means}")
    kept = "kept (it matches)" if result.reused else "written"
    click.echo(f"evaluation {kept}: {result.out}/metrics.parquet, metrics.csv, evaluation.json")


@click.command()
@click.option(
    "--cache",
    type=PATH,
    help="Evaluate this cache first (a complete, matching evaluation in --metrics is reused).",
)
@evaluation_options
@click.option("--metrics", type=PATH, help="Evaluation folder to read or write [default: --out].")
@option(
    "--gallery",
    source=ReportConfig,
    type=click.IntRange(1),
    help="Worst, typical and best views (each) shown per model and prompt.",
)
@click.option(
    "--html",
    is_flag=True,
    help="Also write report.html beside report.md, its figures inside: one file to send.",
)
@click.option(
    "--out", type=PATH, help="Report folder [default: reports/<cache name>, or --metrics]."
)
@user_errors
def report(
    cache: Path | None,
    metrics: Path | None,
    gallery: int,
    html: bool,
    out: Path | None,
    **evaluation: Any,
) -> None:
    """Write report.md and its figures: pretrained vs fine-tuned, per prompt, with failures.

    With --cache (and --decoder runs) it evaluates first; without, it reads --metrics.

    Example: python cli.py report --cache cache/flood.h5 --decoder runs/point+box+none
    """
    from floodcache.report.report import run_report

    if cache is None and evaluation["decoders"]:
        raise click.UsageError("--decoder needs --cache: the runs are evaluated on that cache")
    evaluate = None if cache is None else EvaluateConfig(cache=cache, out=metrics, **evaluation)
    config = ReportConfig(out=out, metrics=metrics, evaluate=evaluate, gallery=gallery, html=html)
    result = run_report(config)
    click.echo(f"report {result.report} ({len(result.figures)} figures)")
    if result.html:
        click.echo(f"one file to send: {result.html}")


COMMANDS = [evaluate, report]
