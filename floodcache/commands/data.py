"""`download` and `audit`: the data and the weights, fetched and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from floodcache.commands.common import PATH, data_options, option, raster_options, user_errors
from floodcache.commands.short_help import READING_ADVANCED, ShortHelpCommand
from floodcache.data import download
from floodcache.data.audit import Reading, audit_folder
from floodcache.data.raster import RasterReading
from floodcache.embed.config import EmbedConfig
from floodcache.sam.checkpoints import CHECKPOINTS


@click.command(name="download")
@click.option(
    "--data",
    "data_dir",
    type=PATH,
    help="Also fetch the Kaggle flood data set into this folder (needs Kaggle credentials).",
)
@click.option(
    "--checkpoint-dir",
    type=PATH,
    help="Where SAM checkpoints go [default: $FLOODCACHE_CHECKPOINT_DIR or ./checkpoints].",
)
@option(
    "--model-type",
    source=download.download_checkpoint,
    type=click.Choice(list(CHECKPOINTS)),
    help="Which official SAM checkpoint to fetch.",
)
@user_errors
def download_command(data_dir: Path | None, checkpoint_dir: Path | None, model_type: str) -> None:
    """Fetch the official SAM checkpoint (sha256-checked, resumable) and, with --data, the data set.

    Example: python cli.py download --data data/flood --model-type vit_b
    """
    if data_dir:
        click.echo(f"data set in {download.download_dataset(data_dir)}")
    path = download.download_checkpoint(model_type, checkpoint_dir)
    click.echo(f"checkpoint {path} (sha256 checked)")


@click.command(cls=ShortHelpCommand, advanced=READING_ADVANCED)
@data_options(EmbedConfig)  # the audit reads the data as embed does
@raster_options
@click.option("--out", type=PATH, help="Write the problems as CSV here.")
@user_errors
def audit(out: Path | None, **options: Any) -> None:
    """Read every image and mask for real and report every problem found.

    One CSV row per (file, problem): image, mask, problem, detail.

    Example: python cli.py audit --data ../shared/flood_dataset --out reports/audit.csv
    """
    data_dir = options["data_dir"]
    if out and data_dir and Path(out).resolve() == (Path(data_dir) / "metadata.csv").resolve():
        raise click.UsageError(f"--out {out} is the data's metadata.csv: write elsewhere")
    raster = RasterReading(options.pop("bands"), options.pop("scale"))
    reading = Reading(options.pop("allow_outside_paths"), options.pop("max_pixels"), raster)
    report = audit_folder(**options, progress=True, reading=reading)
    click.echo(report.summary())
    if out:
        report.write_csv(out)
        click.echo(f"problems written to {out}")


COMMANDS = [download_command, audit]
