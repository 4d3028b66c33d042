"""`predict` and `export`: a fine-tuned decoder used on new images, or merged into SAM."""

from __future__ import annotations

from pathlib import Path

import click

from floodcache.commands.common import (
    DEVICE_HELP,
    ENCODER_PRECISION_HELP,
    PATH,
    max_pixels_option,
    precision_option,
    user_errors,
)
from floodcache.predict.config import FolderConfig, PredictConfig

CHECKPOINT_OPTION = click.option(
    "--checkpoint",
    type=PATH,
    required=True,
    help="The SAM checkpoint the run's cache was embedded with.",
)
DECODER_OPTION = click.option("--decoder", type=PATH, required=True, help="Fine-tuned run folder.")


def _numbers(text: str) -> tuple[float, ...]:
    """'X,Y' or 'X0,Y0,X1,Y1' -> floats (click callback helper)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated numbers") from None


def _coordinates(count: int):
    def parse(ctx, param, value):
        texts = value if param.multiple else [value] if value else []
        values = [_numbers(text) for text in texts]
        for v in values:
            if len(v) != count:
                raise click.BadParameter(f"needs {count} comma-separated numbers, got {v}")
        return tuple(values) if param.multiple else (values[0] if values else None)

    return parse


@click.command()
@CHECKPOINT_OPTION
@DECODER_OPTION
@click.option(
    "--image",
    type=click.Path(path_type=Path, exists=True),
    required=True,
    help="An image, or a folder of images (segmented prompt-free, SAM loaded once).",
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
    help="Mask PNG (255 = water); for a folder of images, a folder: <stem>.png per image and "
    "predictions.csv (water fraction per image).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing --out (a folder's masks: predict them all again).",
)
@precision_option(PredictConfig, "encoder", ENCODER_PRECISION_HELP)
@max_pixels_option(PredictConfig)
@click.option("--device", help=DEVICE_HELP)
@user_errors
def predict(image, points, background, box, **run) -> None:
    """Segment the water in a new image, or each image of a folder, with a fine-tuned decoder.

    No prompt: prompt-free (train the decoder with `none` among its --train-prompts). A
    folder's images get no prompt; a rerun keeps the masks already written and goes on.

    Example: python cli.py predict --checkpoint checkpoints/sam_vit_b_01ec64.pth
    --decoder runs/point+box+none --image photo.jpg --out photo_water.png
    (or --image photos/ --out water/)
    """
    if image.is_dir():
        if points or background or box:
            raise click.UsageError(
                "--point, --background and --box are for one image; give --image FILE"
            )
        from floodcache.predict.folder import run_predict_folder

        result = run_predict_folder(FolderConfig(images=image, **run))
        click.echo(
            f"{result.out}: {result.predicted} images segmented, {len(result.kept)} kept from "
            f"an earlier run, {len(result.unreadable)} unreadable ({result.seconds:.1f} s); "
            f"water fraction per image in {result.summary}"
        )
        return
    from floodcache.predict.segmenter import run_predict

    config = PredictConfig(image=image, points=points, background=background, box=box, **run)
    result = run_predict(config)
    click.echo(
        f"{result.out}: {result.mask.mean():.1%} water, SAM's predicted IoU {result.score:.3f}"
    )


@click.command()
@CHECKPOINT_OPTION
@DECODER_OPTION
@click.option("--out", type=PATH, required=True, help="The merged checkpoint (.pth).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@user_errors
def export(checkpoint, decoder, out, overwrite) -> None:
    """Write a full SAM checkpoint with the fine-tuned mask decoder merged in.

    segment-anything loads it: sam_model_registry["vit_b"](checkpoint=OUT).

    Example: python cli.py export --checkpoint checkpoints/sam_vit_b_01ec64.pth
    --decoder runs/point+box+none --out checkpoints/sam_vit_b_flood.pth
    """
    from floodcache.export import ExportConfig, run_export

    path = run_export(
        ExportConfig(checkpoint=checkpoint, decoder=decoder, out=out, overwrite=overwrite)
    )
    click.echo(f"fine-tuned SAM checkpoint {path}")


COMMANDS = [predict, export]
