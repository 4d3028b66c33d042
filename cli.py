"""floodcache command line: embed SAM once, fine-tune its mask decoder from the cache.

Each command parses its options, builds a config and calls one library function.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from floodcache import data, download
from floodcache.cache import CacheError, verify
from floodcache.embed import EmbedConfig, run_embed
from floodcache.encoder import MODEL_TYPES, PRECISIONS, CheckpointError
from floodcache.prompts import PROMPTS
from floodcache.train import TrainConfig, run_train

USER_ERRORS = (
    CacheError,
    CheckpointError,
    download.DownloadError,
    data.UnreadableFile,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)


def user_errors(command):
    """Turn the library's expected errors into a clean message and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as err:
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: finished work is kept; run the same command again to resume.",
                err=True,
            )
            sys.exit(130)

    return wrapper


def data_options(command):
    """--data / --images / --masks / --on-mismatch, shared by audit and embed."""
    options = [
        click.option(
            "--data",
            "data_dir",
            type=click.Path(path_type=Path),
            help="Folder in the Kaggle layout: Image/, Mask/, optional metadata.csv.",
        ),
        click.option(
            "--images",
            type=click.Path(path_type=Path),
            help="Folder of images (with --masks), paired with masks by file stem.",
        ),
        click.option("--masks", type=click.Path(path_type=Path), help="Folder of masks."),
        click.option(
            "--on-mismatch",
            type=click.Choice(["exclude", "resize"]),
            default="exclude",
            show_default=True,
            help="A mask whose size differs from its image: leave the pair out, or "
            "resize the mask to the image (explicit opt-in).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """floodcache: adapt Segment Anything (SAM) to flood-water segmentation.

    audit -> embed (SAM's image encoder, once) -> train (mask decoder only, from the cache).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    logging.captureWarnings(True)


@main.command(name="download")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    help="Also fetch the Kaggle flood data set into this folder (needs Kaggle credentials).",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(path_type=Path),
    help="Where SAM checkpoints go [default: $FLOODCACHE_CHECKPOINT_DIR or ./checkpoints].",
)
@click.option(
    "--model-type",
    type=click.Choice(list(download.CHECKPOINTS)),
    default="vit_b",
    show_default=True,
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


@main.command()
@data_options
@click.option("--out", type=click.Path(path_type=Path), help="Write the problems as CSV here.")
@user_errors
def audit(data_dir, images, masks, on_mismatch, out) -> None:
    """Read every image and mask for real and report every problem found.

    One CSV row per (file, problem): image, mask, problem, detail.

    Example: python cli.py audit --data ../shared/flood_dataset --out reports/audit.csv
    """
    report = data.audit_folder(data_dir, images, masks, on_mismatch, progress=True)
    click.echo(report.summary())
    if out:
        report.write_csv(out)
        click.echo(f"problems written to {out}")


@main.command()
@data_options
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="SAM checkpoint file (e.g. checkpoints/sam_vit_b_01ec64.pth).",
)
@click.option(
    "--random-weights",
    is_flag=True,
    help="Use an untrained SAM instead of a checkpoint. Smoke tests only: every "
    "number it produces is meaningless.",
)
@click.option(
    "--model-type",
    type=click.Choice(list(MODEL_TYPES)),
    default="vit_b",
    show_default=True,
    help="SAM variant (vit_tiny is a test-only architecture).",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path("cache/flood.h5"),
    show_default=True,
    help="The HDF5 cache to write.",
)
@click.option(
    "--augment",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Extra augmented views per training image.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the split and the augmentations.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Views per encoder call.",
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    default="fp32",
    show_default=True,
    help="Encoder precision (the cache stores float16 anyway).",
)
@click.option("--device", help="torch device, e.g. cuda:0 or cpu [default: cuda if available]")
@click.option("--limit", type=click.IntRange(1), help="Embed only the first N usable images.")
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="Processes that read and augment images.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing cache (or unfinished run) that was built differently.",
)
@user_errors
def embed(
    data_dir,
    images,
    masks,
    on_mismatch,
    checkpoint,
    random_weights,
    model_type,
    cache,
    augment,
    seed,
    batch_size,
    precision,
    device,
    limit,
    workers,
    overwrite,
) -> None:
    """Run SAM's image encoder once per view and store everything in one HDF5 cache.

    Killed part way, the same command resumes without redoing finished views.

    Example: python cli.py embed --data ../shared/flood_dataset
    --checkpoint checkpoints/sam_vit_b_01ec64.pth --augment 3
    """
    config = EmbedConfig(
        cache=cache,
        data_dir=data_dir,
        images=images,
        masks=masks,
        checkpoint=checkpoint,
        random_weights=random_weights,
        model_type=model_type,
        augment=augment,
        seed=seed,
        precision=precision,
        on_mismatch=on_mismatch,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        device=device,
        overwrite=overwrite,
    )
    result = run_embed(config)
    if result.rank != 0:  # under torchrun, rank 0 speaks for the run
        return
    if result.embedded:
        click.echo(
            f"embedded {result.embedded} views in {result.seconds:.1f} s "
            f"({result.views_per_second:.3g} views/s, {1 / result.views_per_second:.3g} s/view)"
        )
    click.echo(verify(result.cache).summary())


@main.command()
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path("cache/flood.h5"),
    show_default=True,
    help="The cache written by `embed`.",
)
@click.option(
    "--prompt",
    default="point",
    show_default=True,
    help=f"Prompt strategy, or several comma-separated to train on a mix: {', '.join(PROMPTS)}.",
)
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate.")
@click.option(
    "--step-size",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="StepLR: epochs between learning-rate drops.",
)
@click.option(
    "--gamma",
    type=float,
    default=0.5,
    show_default=True,
    help="StepLR: learning-rate factor at each drop.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Views (image embeddings) per decoder step.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--points",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="k positive and k negative points for the `points` strategy.",
)
@click.option(
    "--box-jitter",
    type=click.FloatRange(0),
    default=0.1,
    show_default=True,
    help="Training box noise, as a fraction of the box side.",
)
@click.option("--device", help="torch device [default: cuda if available]")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [default: runs/<prompt>].")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in --out.")
@user_errors
def train(
    cache,
    prompt,
    epochs,
    lr,
    step_size,
    gamma,
    batch_size,
    seed,
    points,
    box_jitter,
    device,
    out,
    overwrite,
) -> None:
    """Fine-tune SAM's mask decoder from the cache (image and prompt encoders frozen).

    Writes decoder.pt (a MaskDecoder state dict), config.json and history.csv to --out,
    keeping the epoch with the best validation IoU.

    Example: python cli.py train --cache cache/flood.h5 --prompt point,box,none
    """
    config = TrainConfig(
        cache=cache,
        out=out or Path("runs") / prompt.replace(",", "+"),
        prompt=prompt,
        epochs=epochs,
        lr=lr,
        step_size=step_size,
        gamma=gamma,
        batch_size=batch_size,
        seed=seed,
        points=points,
        box_jitter=box_jitter,
        device=device,
        overwrite=overwrite,
    )
    result = run_train(config)
    best = result.history[result.best_epoch - 1]
    click.echo(
        f"best epoch {result.best_epoch}: val IoU {best.val_iou:.3f}; "
        f"{result.views_per_second:.1f} views/s; decoder in {result.out}/decoder.pt"
    )


@main.command(name="verify")
@click.option(
    "--cache", type=click.Path(path_type=Path), default=Path("cache/flood.h5"), show_default=True
)
@user_errors
def verify_command(cache) -> None:
    """Check a cache: structure, checksums, finite values, fingerprint, counts per split.

    Exits with status 1 when the cache is damaged.

    Example: python cli.py verify --cache cache/flood.h5
    """
    report = verify(cache)
    click.echo(report.summary())
    if not report.ok:
        raise click.ClickException(
            f"{cache} is damaged: rebuild it with `python cli.py embed --overwrite ...`"
        )


if __name__ == "__main__":
    main()
