"""`run`: audit -> embed -> train -> evaluate -> report in one go."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from floodcache.commands.common import (
    DEVICE_HELP,
    PATH,
    data_options,
    option,
    raster_options,
    user_errors,
)
from floodcache.commands.embed import checkpoint_options, raster_reading
from floodcache.commands.evaluate import EVAL_PROMPTS_HELP
from floodcache.commands.short_help import READING_ADVANCED, ShortHelpCommand
from floodcache.commands.train import EPOCHS_HELP, TRAIN_PROMPTS_HELP
from floodcache.pipeline.config import PipelineConfig

STUDY = PipelineConfig()  # the defaults of `run`: each stage's, as the study sets them


@click.command(
    name="run",
    cls=ShortHelpCommand,
    advanced=(*READING_ADVANCED, "eval_prompts", "seed", "device", "out_dir"),
)
@data_options(STUDY.embed)
@raster_options
@checkpoint_options
@option(
    "--augment", source=STUDY.embed, type=click.IntRange(0), help="Extra views per training image."
)
@option("--epochs", source=STUDY.train, type=click.IntRange(1), help=EPOCHS_HELP)
@option("--train-prompts", source=STUDY.train, help=TRAIN_PROMPTS_HELP)
@option("--eval-prompts", source=STUDY.report.evaluate, help=EVAL_PROMPTS_HELP)
@click.option("--limit", type=click.IntRange(1), help="Only the first N usable images.")
@option(
    "--seed",
    source=STUDY.embed,
    type=int,
    help="Seed of the split, the augmentations, the training and the evaluation's prompts.",
)
@click.option("--device", help=DEVICE_HELP)
@option("--out-dir", source=STUDY, type=PATH, help="Root of cache/, runs/ and reports/.")
@option("--name", source=STUDY, help="Names the cache, run and report.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Retrain and re-evaluate where settings changed (the cache is never replaced).",
)
@user_errors
def run_command(**options: Any) -> None:
    """audit -> embed -> train -> evaluate -> report, skipping steps already complete.

    Example: python cli.py run --data ../shared/flood_dataset
    --checkpoint checkpoints/sam_vit_b_01ec64.pth
    """
    from floodcache.pipeline.run import run_pipeline

    result = run_pipeline(pipeline_config(**options))
    for step, what in result.steps.items():
        click.echo(f"{step:18s} {what}")


def pipeline_config(**options: Any) -> PipelineConfig:
    """The nested configs of `run`'s options: each stage gets the options it takes, and the
    seed and device reach every stage; the options no other stage takes are embed's."""
    shared = {"seed": options.pop("seed"), "device": options.pop("device")}
    train = {name: options.pop(name) for name in ("epochs", "train_prompts")}
    assert STUDY.report.evaluate is not None, "a pipeline's report always evaluates first"
    evaluate = replace(STUDY.report.evaluate, eval_prompts=options.pop("eval_prompts"), **shared)
    whole = {name: options.pop(name) for name in ("out_dir", "name", "overwrite")}
    raster = raster_reading(options)
    return PipelineConfig(
        embed=replace(STUDY.embed, raster=raster, **options, **shared),
        train=replace(STUDY.train, **train, **shared),
        report=replace(STUDY.report, evaluate=evaluate),
        **whole,
    )


COMMANDS = [run_command]
