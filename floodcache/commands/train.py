"""`train`: SAM's mask decoder fine-tuned from the cache."""

from __future__ import annotations

from typing import Any

import click

from floodcache.commands.common import DEVICE_HELP, PATH, option, precision_option, user_errors
from floodcache.commands.short_help import ShortHelpCommand
from floodcache.prompts import PROMPTS
from floodcache.train.config import TrainConfig

TRAIN_PROMPTS_HELP = (
    "The training mix: a prompt strategy, or several comma-separated, each view getting one "
    f"of them per epoch in turn: {', '.join(PROMPTS)}."
)

EPOCHS_HELP = "Passes over the training views; the epoch with the best validation IoU is kept."


@click.command(
    cls=ShortHelpCommand,
    advanced=("step_size", "gamma", "points", "box_jitter", "precision"),
)
@option("--cache", source=TrainConfig, type=PATH, help="The cache written by `embed`.")
@option("--train-prompts", source=TrainConfig, help=TRAIN_PROMPTS_HELP)
@option("--epochs", source=TrainConfig, type=click.IntRange(1), help=EPOCHS_HELP)
@option("--lr", source=TrainConfig, type=float, help="Adam learning rate.")
@option(
    "--step-size",
    source=TrainConfig,
    type=click.IntRange(1),
    help="StepLR: epochs between learning-rate drops.",
)
@option(
    "--gamma", source=TrainConfig, type=float, help="StepLR: learning-rate factor at each drop."
)
@option(
    "--batch-size",
    source=TrainConfig,
    type=click.IntRange(1),
    help="Views (image embeddings) per decoder step.",
)
@option("--seed", source=TrainConfig, type=int, help="Seed of the shuffling and the prompts.")
@option(
    "--points",
    source=TrainConfig,
    type=click.IntRange(1),
    help="k positive and k negative points for the `points` strategy.",
)
@option(
    "--box-jitter",
    source=TrainConfig,
    type=click.FloatRange(0),
    help="Training box noise, as a fraction of the box side.",
)
@precision_option(
    TrainConfig, "train", "Decoder forward: auto is bf16 autocast on a GPU, fp32 on a CPU."
)
@click.option("--device", help=DEVICE_HELP)
@click.option("--out", type=PATH, help="Run folder [default: runs/<train prompts joined by +>].")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in --out.")
@user_errors
def train(**options: Any) -> None:
    """Fine-tune SAM's mask decoder from the cache (image and prompt encoders frozen).

    Writes decoder.pt (a MaskDecoder state dict), config.json and history.csv to --out,
    keeping the epoch with the best validation IoU.

    Example: python cli.py train --cache cache/flood.h5 --train-prompts point,box,none
    """
    from floodcache.train.run import run_train

    result = run_train(TrainConfig(**options))
    best = result.history[result.best_epoch - 1]
    click.echo(
        f"best epoch {result.best_epoch}: val IoU {best.val_iou:.3f}; "
        f"{result.views_per_second:.1f} views/s, {result.validation_share:.0%} of the time "
        f"validating; decoder in {result.out}/decoder.pt"
    )


COMMANDS = [train]
