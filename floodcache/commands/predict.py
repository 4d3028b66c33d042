"""`predict` and `export`: a fine-tuned decoder used on new images, or merged into SAM."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from floodcache.commands.common import (
    DEVICE_HELP,
    ENCODER_PRECISION_HELP,
    PATH,
    max_pixels_option,
    option,
    precision_option,
    raster_options,
    user_errors,
    with_options,
)
from floodcache.commands.short_help import ShortHelpCommand
from floodcache.predict.config import ModelConfig, PhotoConfig, PredictConfig, SceneConfig
from floodcache.predict.geotiff import PROBABILITIES
from floodcache.predict.tiles import MIN_TILE

if TYPE_CHECKING:
    from floodcache.predict.folder import FolderResult
    from floodcache.predict.scene import SceneResult
    from floodcache.predict.scene_folder import ScenesResult
    from floodcache.predict.segmenter import Prediction

CHECKPOINT_OPTION = click.option(
    "--checkpoint",
    type=PATH,
    help="The SAM checkpoint the run's cache was embedded with [default: the official one "
    "in ./checkpoints].",
)
RANDOM_WEIGHTS_OPTION = click.option(
    "--random-weights",
    is_flag=True,
    help="For a run embedded with --random-weights (the pipeline check): the same untrained "
    "SAM, rebuilt. Its masks mean nothing.",
)
DECODER_OPTION = click.option("--decoder", type=PATH, required=True, help="Fine-tuned run folder.")


def _numbers(text: str) -> tuple[float, ...]:
    """'X,Y' or 'X0,Y0,X1,Y1' -> floats (click callback helper)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated numbers") from None


def _coordinates(count: int):
    def parse(ctx: click.Context, param: click.Parameter, value: Any) -> object:
        texts = value if param.multiple else [value] if value else []
        values = [_numbers(text) for text in texts]
        for v in values:
            if len(v) != count:
                raise click.BadParameter(f"needs {count} comma-separated numbers, got {v}")
        return tuple(values) if param.multiple else (values[0] if values else None)

    return parse


def scene_options(command: Callable) -> Callable:
    """The options of georeferenced rasters (scenes) alone."""
    return with_options(
        command,
        [
            option(
                "--tile",
                source=SceneConfig,
                unset=True,
                type=click.IntRange(MIN_TILE),
                help="Rasters: tile side in pixels at the scene's resolution (1024: SAM's "
                "input, no resize).",
            ),
            option(
                "--overlap",
                source=SceneConfig,
                unset=True,
                type=click.IntRange(0),
                help="Rasters: pixels shared by neighbouring tiles, where their logits are "
                "blended (at most half of --tile).",
            ),
            functools.partial(raster_options, unset=True),
            click.option(
                "--polygons",
                type=PATH,
                help="Rasters: also write the water as GeoJSON polygons (EPSG:4326, each "
                "with its area_m2); for a folder of rasters, a folder of <stem>.geojson.",
            ),
            option(
                "--min-area",
                source=SceneConfig,
                unset=True,
                type=click.FloatRange(0),
                help="Rasters: leave water polygons smaller than this (m2) out of --polygons.",
            ),
            click.option(
                "--probabilities",
                type=PATH,
                help="Rasters: also write P(water) as a COG; for a folder, a folder.",
            ),
            option(
                "--probability-dtype",
                source=SceneConfig,
                unset=True,
                type=click.Choice(list(PROBABILITIES)),
                help="Rasters: uint8 is P(water) x 254 (255 no data); float16 is P(water) "
                "(NaN no data).",
            ),
        ],
    )


# Rarely changed: the rasters' tiling and reading, and the encoder's device and precision.
PREDICT_ADVANCED: tuple[str, ...] = (
    "background",
    "precision",
    "max_pixels",
    "device",
    "tile",
    "overlap",
)
PREDICT_ADVANCED += ("bands", "scale", "min_area", "probability_dtype")


@click.command(cls=ShortHelpCommand, advanced=PREDICT_ADVANCED)
@CHECKPOINT_OPTION
@RANDOM_WEIGHTS_OPTION
@DECODER_OPTION
@click.option(
    "--image",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="An image, or a folder of images (segmented prompt-free, SAM loaded once); or a "
    "georeferenced raster (GeoTIFF...), or a folder of them, segmented tile by tile.",
)
@click.option(
    "--point",
    "points",
    multiple=True,
    callback=_coordinates(2),
    help="A water click X,Y in image pixels; repeat for several.",
)
@click.option(
    "--background",
    multiple=True,
    callback=_coordinates(2),
    help="A not-water click X,Y; repeat for several.",
)
@click.option("--box", callback=_coordinates(4), help="Water box X0,Y0,X1,Y1 in image pixels.")
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Mask PNG (255 = water); a raster's: a COG on its grid (1 water, 0 land, 255 no "
    "data). A folder's: a folder of masks and predictions.csv (water per file).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing --out (a folder's masks: predict them all again).",
)
@precision_option(ModelConfig, "encoder", ENCODER_PRECISION_HELP)
@max_pixels_option(PhotoConfig)
@click.option("--device", help=DEVICE_HELP)
@scene_options
@user_errors
def predict(image: Path, **options: Any) -> None:
    """Segment the water in an image, a folder of images, or a georeferenced raster.

    No prompt: prompt-free (train with `none`). A raster is read in overlapping tiles.

    Example: python cli.py predict --checkpoint checkpoints/sam_vit_b_01ec64.pth
    --decoder runs/point+box+none --image photo.jpg --out photo_water.png
    """
    from floodcache.predict.run import run_predict

    model_fields = ("checkpoint", "decoder", "device", "precision", "random_weights")
    model = ModelConfig(**{name: options.pop(name) for name in model_fields})
    config = PredictConfig(model, image, **options)
    result = run_predict(config)
    line = LINES[type(result).__name__](result)
    if line:
        click.echo(line)


def photo_line(result: Prediction) -> str:
    return f"{result.out}: {result.mask.mean():.1%} water, SAM's predicted IoU {result.score:.3f}"


def folder_line(result: FolderResult) -> str:
    return (
        f"{result.out}: {result.predicted} images segmented, {len(result.kept)} kept from "
        f"an earlier run, {len(result.unreadable)} unreadable ({result.seconds:.1f} s); "
        f"water fraction per image in {result.summary}"
    )


def scenes_line(result: ScenesResult) -> str | None:
    """A folder of scenes' line; None but from rank 0, under torchrun."""
    if result.rank != 0:
        return None
    return (
        f"{result.out}: {result.predicted} scenes segmented, {len(result.kept)} kept "
        f"from an earlier run, {len(result.unreadable)} not usable "
        f"({result.seconds:.1f} s); water area per scene in {result.summary}"
    )


def scene_line(result: SceneResult) -> str | None:
    """The summary line of one scene; None but from rank 0 (which wrote the outputs),
    under torchrun."""
    if result.summary is None:
        return None
    summary, polygons = result.summary, ""
    if result.outputs.polygons:
        polygons = f"; {summary.polygons} polygons in {result.outputs.polygons}"
    return (
        f"{result.outputs.mask}: {summary.water_m2 / 1e6:.3f} km2 of water, "
        f"{summary.water_fraction:.1%} of the {summary.data_m2 / 1e6:.3f} km2 with data"
        f"{polygons}; {result.tiles} tiles, {result.tiles - result.decoded} of them without "
        f"data (not encoded), in {result.seconds:.1f} s"
    )


# Each result's line, by its class's name (the classes import torch; --help must not).
LINES: dict[str, Callable[[Any], str | None]] = {
    "Prediction": photo_line,
    "FolderResult": folder_line,
    "SceneResult": scene_line,
    "ScenesResult": scenes_line,
}


@click.command()
@CHECKPOINT_OPTION
@RANDOM_WEIGHTS_OPTION
@DECODER_OPTION
@click.option("--out", type=PATH, required=True, help="The merged checkpoint (.pth).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@user_errors
def export(
    checkpoint: Path | None, random_weights: bool, decoder: Path, out: Path, overwrite: bool
) -> None:
    """Write a full SAM checkpoint with the fine-tuned mask decoder merged in.

    segment-anything loads it: sam_model_registry["vit_b"](checkpoint=OUT).

    Example: python cli.py export --checkpoint checkpoints/sam_vit_b_01ec64.pth
    --decoder runs/point+box+none --out checkpoints/sam_vit_b_flood.pth
    """
    from floodcache.export import ExportConfig, run_export

    path = run_export(
        ExportConfig(checkpoint, decoder, out, overwrite, random_weights=random_weights)
    )
    click.echo(f"fine-tuned SAM checkpoint {path}")


COMMANDS = [predict, export]
