"""`embed` and `verify`: SAM's image encoder once per view, into a cache; the cache checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from floodcache.cache.verify import verify
from floodcache.commands.common import (
    DEVICE_HELP,
    ENCODER_PRECISION_HELP,
    PATH,
    data_options,
    option,
    precision_option,
    raster_options,
    resize_option,
    user_errors,
)
from floodcache.commands.short_help import READING_ADVANCED, ShortHelpCommand
from floodcache.data.raster import RasterReading
from floodcache.embed.config import EmbedConfig
from floodcache.settings import MODEL_TYPES
from floodcache.utils import program


def raster_reading(options: dict) -> RasterReading:
    """--bands and --scale, taken out of a command's options."""
    return RasterReading(options.pop("bands"), options.pop("scale"))


def checkpoint_options(command: Callable) -> Callable:
    """--checkpoint / --random-weights / --model-type, shared by embed and run."""
    command = option(
        "--model-type",
        source=EmbedConfig,
        type=click.Choice(list(MODEL_TYPES)),
        help="SAM variant (vit_tiny is a test-only architecture).",
    )(command)
    command = click.option(
        "--random-weights",
        is_flag=True,
        help="Use an untrained SAM instead of a checkpoint. Smoke tests only: every "
        "number it produces is meaningless.",
    )(command)
    return click.option(
        "--checkpoint",
        type=PATH,
        help="SAM checkpoint file [default: the official one in ./checkpoints, fetched by "
        "`download`].",
    )(command)


@click.command(
    cls=ShortHelpCommand,
    advanced=(*READING_ADVANCED, "seed", "batch_size", "precision", "resize", "workers"),
)
@data_options(EmbedConfig)
@raster_options
@checkpoint_options
@option("--cache", source=EmbedConfig, type=PATH, help="The HDF5 cache to write.")
@option(
    "--augment", source=EmbedConfig, type=click.IntRange(0), help="Extra views per training image."
)
@option("--seed", source=EmbedConfig, type=int, help="Seed of the split and the augmentations.")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    help="Views per encoder call [default: what fits in GPU memory, at most 32; 2 on a CPU].",
)
@precision_option(EmbedConfig, "encoder", ENCODER_PRECISION_HELP)
@resize_option(EmbedConfig)
@click.option("--device", help=DEVICE_HELP)
@click.option("--limit", type=click.IntRange(1), help="Embed only the first N usable images.")
@click.option(
    "--workers",
    type=click.IntRange(0),
    help="Processes that read and augment images [default: CPU cores - 1, at most 16].",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing cache (or unfinished run) that was built differently.",
)
@user_errors
def embed(**options: Any) -> None:
    """Run SAM's image encoder once per view and store everything in one HDF5 cache.

    Killed part way, the same command resumes without redoing finished views.

    Example: python cli.py embed --data ../shared/flood_dataset
    --checkpoint checkpoints/sam_vit_b_01ec64.pth --augment 3
    """
    from floodcache.embed.run import run_embed

    result = run_embed(EmbedConfig(raster=raster_reading(options), **options))
    if result.rank != 0:  # under torchrun, rank 0 speaks for the run
        return
    if result.embedded:
        click.echo(
            f"embedded {result.embedded} views in {result.seconds:.1f} s "
            f"({result.views_per_second:.3g} views/s, {1 / result.views_per_second:.3g} s/view)"
        )
    _verified(result.cache)


def _verified(cache) -> None:
    """Show what `verify` finds; exit with status 1 when the cache is damaged."""
    report = verify(cache)
    click.echo(report.summary())
    if not report.ok:
        raise click.ClickException(
            f"{cache} is damaged: rebuild it with {program.command('embed', '--overwrite', '...')}"
        )


@click.command(name="verify")
@option("--cache", source=EmbedConfig, type=PATH, help="The cache written by `embed`.")
@user_errors
def verify_command(cache: Path) -> None:
    """Check a cache: structure, checksums, finite values, fingerprint, counts per split.

    Exits with status 1 when the cache is damaged.

    Example: python cli.py verify --cache cache/flood.h5
    """
    _verified(cache)


COMMANDS = [embed, verify_command]
