"""`download` and `audit`: the data and the weights, fetched and checked."""

from __future__ import annotations

from pathlib import Path

import click

from floodcache.commands.common import PATH, data_options, option, raster_options, user_errors
from floodcache.commands.short_help import READING_ADVANCED, ShortHelpCommand
from floodcache.data import download
from floodcache.data.audit import audit_folder
from floodcache.data.raster import RasterReading
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
def download_command(data_dir, checkpoint_dir, model_type) -> None:
    """Fetch the official SAM checkpoint (sha256-checked, resumable) and, with --data, the data set.

    Example: python cli.py download --data data/flood --model-type vit_b
    """
    if data_dir:
        click.echo(f"data set in {download.download_dataset(data_dir)}")
    path = download.download_checkpoint(model_type, checkpoint_dir)
    click.echo(f"checkpoint {path} (sha256 checked)")


@click.command(cls=ShortHelpCommand, advanced=READING_ADVANCED)
@data_options(audit_folder)
@raster_options
@click.option("--out", type=PATH, help="Write the problems as CSV here.")
@user_errors
def audit(
    data_dir, images, masks, on_mismatch, allow_outside_paths, max_pixels, bands, scale, out
) -> None:
    """Read every image and mask for real and report every problem found.

    One CSV row per (file, problem): image, mask, problem, detail.

    Example: python cli.py audit --data ../shared/flood_dataset --out reports/audit.csv
    """
    if out and data_dir and Path(out).resolve() == (Path(data_dir) / "metadata.csv").resolve():
        raise click.UsageError(f"--out {out} is the data's metadata.csv: write elsewhere")
    reading = {"allow_outside_paths": allow_outside_paths, "max_pixels": max_pixels}
    reading["reading"] = RasterReading(bands, scale)
    report = audit_folder(data_dir, images, masks, on_mismatch, True, **reading)
    click.echo(report.summary())
    if out:
        report.write_csv(out)
        click.echo(f"problems written to {out}")


COMMANDS = [download_command, audit]
