"""`bench`: floodcache timed against the reference workflow, on the same views."""

from __future__ import annotations

from typing import Any

import click

from floodcache.bench.config import SKIPPABLE, BenchConfig
from floodcache.commands.common import DEVICE_HELP, PATH, RESIZE_HELP, option, user_errors
from floodcache.commands.short_help import ShortHelpCommand
from floodcache.settings import MODEL_TYPES, RESIZE_METHODS


@click.command(
    cls=ShortHelpCommand,
    advanced=("embed_views", "reference_views", "free_gpu_memory", "resizes", "skip"),
)
@click.option("--device", help=DEVICE_HELP)
@option(
    "--views",
    source=BenchConfig,
    type=click.IntRange(1),
    help="Views per stage: 2 on a CPU (ViT-B takes seconds a view), ~500 on a GPU.",
)
@click.option(
    "--embed-views",
    type=click.IntRange(1),
    help="Views for the embed stage if more than --views: a longer run shows embed's steady "
    "rate better (the other stages keep their views in memory).",
)
@option(
    "--model-type",
    source=BenchConfig,
    type=click.Choice(list(MODEL_TYPES)),
    help="SAM variant (vit_tiny: a quick smoke run).",
)
@click.option(
    "--checkpoint",
    type=PATH,
    help="SAM weights [default: random weights; speed does not depend on them].",
)
@click.option(
    "--data",
    "data_dir",
    type=PATH,
    help="Real images (Kaggle layout) instead of generated flood scenes.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    help="Encoder views per call [default: what fits in free memory, at most 32].",
)
@option(
    "--reference-views",
    source=BenchConfig,
    type=click.IntRange(1),
    help="The slow reference runs on the first N of the views.",
)
@click.option(
    "--free-gpu-memory",
    type=click.FloatRange(0.5),
    help="GiB: hold the rest of the GPU's memory, to act as a smaller card (7.5: 8 GB laptop).",
)
@option(
    "--resize",
    name="resizes",
    source=BenchConfig,
    type=click.Choice(list(RESIZE_METHODS)),
    multiple=True,
    help=RESIZE_HELP + " Repeat it to time embed with each, in one run.",
)
@click.option(
    "--skip",
    type=click.Choice(list(SKIPPABLE)),
    multiple=True,
    help="Leave a stage out (repeatable): "
    + "; ".join(f"{name}: {what}" for name, what in SKIPPABLE.items())
    + ".",
)
@click.option("--json", "json_path", type=PATH, help="Also write JSON here.")
@user_errors
def bench(resizes: tuple[str, ...], skip: tuple[str, ...], **options: Any) -> None:
    """Time the reference SAM workflow against floodcache's, on the same views.

    Stages: SamPredictor (fp32, one image at a time) and the reference training step (that
    encoder forward plus one decoder step per view); the encoder alone in each precision,
    with SAM's attention and the fast path; the embed command end to end; decoder training
    from the cache; the cache's size and I/O with and without compression. Prints views/s,
    peak memory and the ratio to the reference.

    Example: python cli.py bench --device cpu --views 2 --json reports/bench-cpu.json
    """
    from floodcache.bench.run import run_bench

    config = BenchConfig(resizes=tuple(dict.fromkeys(resizes)), skip=frozenset(skip), **options)
    click.echo(run_bench(config).table())
    if config.json_path:
        click.echo(f"results written to {config.json_path}")


COMMANDS = [bench]
