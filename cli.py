"""floodcache command line: embed SAM once, fine-tune its mask decoder from the cache.

Each command parses its options, builds a config and calls one library function.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

# Only modules free of torch are imported here, so that --help answers at once; a command
# imports what it runs (`tests/test_cli.py`).
from floodcache import data, download
from floodcache.audit import audit_folder
from floodcache.background import ReaderDied
from floodcache.cache import CacheError, verify
from floodcache.choices import (
    AUTO_PRECISION,
    BENCH_SKIPPABLE,
    MODEL_TYPES,
    PRECISIONS,
    RESIZE_METHODS,
    TRAIN_PRECISIONS,
)
from floodcache.prompts import PROMPTS

USER_ERRORS = (
    CacheError,
    download.CheckpointError,
    download.DownloadError,
    data.UnreadableFile,
    ReaderDied,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)


RESIZE_HELP = (
    "Resize to SAM's input: pil in the readers (exactly SamPredictor.set_image), or torch on "
    "the device (set_torch_image's interpolation; spares the readers each image's resize, "
    "~13% of their CPU)."
)
ENCODER_PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice([AUTO_PRECISION, *PRECISIONS]),
    default=AUTO_PRECISION,
    show_default=True,
    help="Encoder precision: auto is fp16 on a GPU, fp32 on a CPU (the cache stores float16).",
)
RESIZE_OPTION = click.option(
    "--resize",
    type=click.Choice(list(RESIZE_METHODS)),
    default="pil",
    show_default=True,
    help=RESIZE_HELP,
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


def with_options(command, options: list):
    """Apply click options to `command`, the first of the list shown first in --help."""
    for option in reversed(options):
        command = option(command)
    return command


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
    return with_options(command, options)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """floodcache: adapt Segment Anything (SAM) to flood-water segmentation.

    \b
    download -> audit -> embed (SAM's image encoder, once, into an HDF5 cache)
      -> train (the mask decoder only, from the cache) -> evaluate -> report
    `run` does audit to report in one go; then `predict` segments new images and
    `export` writes the fine-tuned SAM checkpoint. `verify` checks a cache, `bench`
    times floodcache against the usual workflow.
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
    report = audit_folder(data_dir, images, masks, on_mismatch, progress=True)
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
    help="Views per encoder call [default: what fits in GPU memory, at most 32; 2 on a CPU].",
)
@ENCODER_PRECISION_OPTION
@RESIZE_OPTION
@click.option("--device", help="torch device, e.g. cuda:0 or cpu [default: cuda if available]")
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
    resize,
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
    from floodcache.embed import EmbedConfig, run_embed

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
        resize=resize,
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
@click.option(
    "--precision",
    type=click.Choice([AUTO_PRECISION, *TRAIN_PRECISIONS]),
    default=AUTO_PRECISION,
    show_default=True,
    help="Decoder forward: auto is bf16 autocast on a GPU (~1.1x fp32), fp32 on a CPU.",
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
    precision,
    device,
    out,
    overwrite,
) -> None:
    """Fine-tune SAM's mask decoder from the cache (image and prompt encoders frozen).

    Writes decoder.pt (a MaskDecoder state dict), config.json and history.csv to --out,
    keeping the epoch with the best validation IoU.

    Example: python cli.py train --cache cache/flood.h5 --prompt point,box,none
    """
    from floodcache.train import TrainConfig, run_train

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
        precision=precision,
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


def split_option(command):
    return click.option(
        "--split",
        type=click.Choice(["train", "val", "test"]),
        default="test",
        show_default=True,
        help="Which views to evaluate.",
    )(command)


def evaluation_options(command):
    """--decoder / --prompts / --split / --device / --overwrite, shared by evaluate and report."""
    options = [
        click.option(
            "--decoder",
            "decoders",
            multiple=True,
            type=click.Path(path_type=Path),
            help="A fine-tuned run folder (from `train`); repeat for several.",
        ),
        click.option(
            "--prompts",
            default=",".join(PROMPTS),
            show_default=True,
            help="Comma-separated prompt strategies to evaluate.",
        ),
        split_option,
        click.option("--device", help="torch device [default: cuda if available]"),
        click.option(
            "--overwrite",
            is_flag=True,
            help="Replace a finished evaluation made with other settings (a matching one is "
            "always reused).",
        ),
    ]
    return with_options(command, options)


@main.command()
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path("cache/flood.h5"),
    show_default=True,
    help="The cache written by `embed`.",
)
@evaluation_options
@click.option("--seed", type=int, default=0, show_default=True, help="Prompt seed.")
@click.option(
    "--points",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="k positive and k negative points for the `points` strategy.",
)
@click.option(
    "--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Views per call."
)
@click.option(
    "--out", type=click.Path(path_type=Path), help="Folder [default: reports/<cache name>]."
)
@user_errors
def evaluate(
    cache, decoders, prompts, split, device, overwrite, seed, points, batch_size, out
) -> None:
    """Evaluate the pretrained decoder and each --decoder on every view of a split.

    Writes metrics.parquet and metrics.csv (one row per model, prompt and view, with the
    exact prompt in original-image pixels) and evaluation.json to --out.

    Example: python cli.py evaluate --cache cache/flood.h5 --decoder runs/point+box+none
    """
    from floodcache.evaluate import EvaluateConfig, run_evaluate
    from floodcache.metrics import summarize

    config = EvaluateConfig(
        cache=cache,
        out=out or Path("reports") / cache.stem,
        decoders=decoders,
        prompts=prompts,
        split=split,
        seed=seed,
        points=points,
        batch_size=batch_size,
        device=device,
        overwrite=overwrite,
    )
    result = run_evaluate(config)
    means = summarize(result.table).pivot("model", index="prompt", values="iou_mean")
    click.echo(f"mean IoU per prompt (rows) and model (columns):\n{means}")
    kept = "kept (it matches)" if result.reused else "written"
    click.echo(f"evaluation {kept}: {result.out}/metrics.parquet, metrics.csv, evaluation.json")


@main.command()
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    help="Evaluate this cache first (a complete, matching evaluation in --metrics is reused).",
)
@evaluation_options
@click.option(
    "--metrics",
    type=click.Path(path_type=Path),
    help="Evaluation folder to read or write [default: --out].",
)
@click.option(
    "--gallery",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Worst views shown per model and prompt.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Report folder [default: reports/<cache name>, or --metrics].",
)
@user_errors
def report(cache, decoders, prompts, split, device, overwrite, metrics, gallery, out) -> None:
    """Write report.md and its figures: pretrained vs fine-tuned, per prompt, with failures.

    With --cache (and --decoder runs) it evaluates first; without, it reads --metrics.

    Example: python cli.py report --cache cache/flood.h5 --decoder runs/point+box+none
    """
    from floodcache.report import ReportConfig, run_report

    if cache is None and metrics is None:
        raise click.UsageError("pass --cache (to evaluate) or --metrics (an evaluation folder)")
    config = ReportConfig(
        out=out or (Path("reports") / cache.stem if cache else metrics),
        metrics=metrics,
        cache=cache,
        decoders=decoders,
        prompts=prompts,
        split=split,
        gallery=gallery,
        device=device,
        overwrite=overwrite,
    )
    result = run_report(config)
    click.echo(f"report {result.report} ({len(result.figures)} figures)")


@main.command(name="run")
@data_options
@click.option("--checkpoint", type=click.Path(path_type=Path), help="SAM checkpoint file.")
@click.option(
    "--random-weights", is_flag=True, help="Untrained SAM: smoke tests only, numbers mean nothing."
)
@click.option(
    "--model-type", type=click.Choice(list(MODEL_TYPES)), default="vit_b", show_default=True
)
@click.option(
    "--augment",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Extra views per training image.",
)
@click.option("--epochs", type=click.IntRange(1), default=15, show_default=True)
@click.option(
    "--prompts",
    default="point,box,none",
    show_default=True,
    help="Prompt mix the one fine-tuned decoder is trained on.",
)
@click.option(
    "--eval-prompts",
    default=",".join(PROMPTS),
    show_default=True,
    help="Prompt strategies evaluated and reported.",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N usable images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", help="torch device [default: cuda if available]")
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Root of cache/, runs/ and reports/.",
)
@click.option("--name", default="flood", show_default=True, help="Names the cache, run and report.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Retrain and re-evaluate where settings changed (the cache is never replaced).",
)
@user_errors
def run_command(
    data_dir,
    images,
    masks,
    on_mismatch,
    checkpoint,
    random_weights,
    model_type,
    augment,
    epochs,
    prompts,
    eval_prompts,
    limit,
    seed,
    device,
    out_dir,
    name,
    overwrite,
) -> None:
    """audit -> embed -> train -> evaluate -> report, skipping steps already complete.

    Example: python cli.py run --data ../shared/flood_dataset
    --checkpoint checkpoints/sam_vit_b_01ec64.pth
    """
    from floodcache.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(
        data_dir=data_dir,
        images=images,
        masks=masks,
        on_mismatch=on_mismatch,
        checkpoint=checkpoint,
        random_weights=random_weights,
        model_type=model_type,
        augment=augment,
        epochs=epochs,
        prompts=prompts,
        eval_prompts=eval_prompts,
        limit=limit,
        seed=seed,
        device=device,
        out_dir=out_dir,
        name=name,
        overwrite=overwrite,
    )
    result = run_pipeline(config)
    for step, what in result.steps.items():
        click.echo(f"{step:18s} {what}")


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


@main.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="The SAM checkpoint the run's cache was embedded with.",
)
@click.option(
    "--decoder", type=click.Path(path_type=Path), required=True, help="Fine-tuned run folder."
)
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
    type=click.Path(path_type=Path),
    required=True,
    help="Mask PNG (255 = water); for a folder of images, a folder: <stem>.png per image and "
    "predictions.csv (water fraction per image).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing --out (a folder's masks: predict them all again).",
)
@ENCODER_PRECISION_OPTION
@click.option("--device", help="torch device [default: cuda if available]")
@user_errors
def predict(
    checkpoint, decoder, image, points, background, box, out, overwrite, precision, device
) -> None:
    """Segment the water in a new image, or each image of a folder, with a fine-tuned decoder.

    No prompt: prompt-free (train the decoder with `none` among its --prompt). A folder's
    images get no prompt; a rerun keeps the masks already written and goes on.

    Example: python cli.py predict --checkpoint checkpoints/sam_vit_b_01ec64.pth
    --decoder runs/point+box+none --image photo.jpg --out photo_water.png
    (or --image photos/ --out water/)
    """
    from floodcache.predict import FolderConfig, PredictConfig, run_predict, run_predict_folder

    run = dict(checkpoint=checkpoint, decoder=decoder, out=out, overwrite=overwrite)
    run.update(precision=precision, device=device)
    if image.is_dir():
        if points or background or box:
            raise click.UsageError(
                "--point, --background and --box are for one image; give --image FILE"
            )
        result = run_predict_folder(FolderConfig(images=image, **run))
        click.echo(
            f"{result.out}: {result.predicted} images segmented, {len(result.kept)} kept from "
            f"an earlier run, {len(result.unreadable)} unreadable ({result.seconds:.1f} s); "
            f"water fraction per image in {result.summary}"
        )
        return
    config = PredictConfig(image=image, points=points, background=background, box=box, **run)
    result = run_predict(config)
    click.echo(
        f"{result.out}: {result.mask.mean():.1%} water, SAM's predicted IoU {result.score:.3f}"
    )


@main.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="The SAM checkpoint the run's cache was embedded with.",
)
@click.option(
    "--decoder", type=click.Path(path_type=Path), required=True, help="Fine-tuned run folder."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="The merged checkpoint (.pth)."
)
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


@main.command()
@click.option("--device", help="torch device [default: cuda if available]")
@click.option(
    "--views",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Views per stage: 2 on a CPU (ViT-B takes ~14 s a view), ~500 on a GPU.",
)
@click.option(
    "--embed-views",
    type=click.IntRange(1),
    help="Views for the embed stage if more than --views: a longer run shows embed's steady "
    "rate better (the other stages keep their views in memory).",
)
@click.option(
    "--model-type",
    type=click.Choice(list(MODEL_TYPES)),
    default="vit_b",
    show_default=True,
    help="SAM variant (vit_tiny: a quick smoke run).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="SAM weights [default: random weights; speed does not depend on them].",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    help="Real images (Kaggle layout) instead of generated flood scenes.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    help="Encoder views per call [default: what fits in free memory, at most 32].",
)
@click.option(
    "--reference-views",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="The slow reference runs on the first N of the views.",
)
@click.option(
    "--free-gpu-memory",
    type=click.FloatRange(0.5),
    help="GiB: hold the rest of the GPU's memory, to act as a smaller card (7.5: 8 GB laptop).",
)
@click.option(
    "--resize",
    "resizes",
    type=click.Choice(list(RESIZE_METHODS)),
    multiple=True,
    default=["pil"],
    show_default=True,
    help=RESIZE_HELP + " Repeat it to time embed with each, in one run.",
)
@click.option(
    "--skip",
    type=click.Choice(list(BENCH_SKIPPABLE)),
    multiple=True,
    help="Leave a stage out (repeatable): "
    + "; ".join(f"{name}: {what}" for name, what in BENCH_SKIPPABLE.items())
    + ".",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write JSON here.")
@user_errors
def bench(
    device,
    views,
    embed_views,
    model_type,
    checkpoint,
    data_dir,
    batch_size,
    reference_views,
    free_gpu_memory,
    resizes,
    skip,
    json_path,
) -> None:
    """Time the reference SAM workflow against floodcache's, on the same views.

    Stages: SamPredictor (fp32, one image at a time) and the reference training step (that
    encoder forward plus one decoder step per view); the encoder alone in each precision,
    with SAM's attention and the fast path; the embed command end to end; decoder training
    from the cache; the cache's size and I/O with and without compression. Prints views/s,
    peak memory and the ratio to the reference.

    Example: python cli.py bench --device cpu --views 2 --json reports/bench-cpu.json
    """
    from floodcache.bench import BenchConfig, run_bench

    config = BenchConfig(
        device=device,
        views=views,
        embed_views=embed_views,
        model_type=model_type,
        checkpoint=checkpoint,
        data_dir=data_dir,
        batch_size=batch_size,
        reference_views=reference_views,
        free_gpu_memory=free_gpu_memory,
        resizes=tuple(dict.fromkeys(resizes)),
        skip=frozenset(skip),
        json_path=json_path,
    )
    click.echo(run_bench(config).table())
    if json_path:
        click.echo(f"results written to {json_path}")


if __name__ == "__main__":
    main()
