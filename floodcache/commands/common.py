"""What every command shares: the errors shown as messages rather than tracebacks, Ctrl-C,
option defaults read from the stage's config, and the option groups several commands take."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from floodcache.cache.format import CacheError
from floodcache.data.decode import UnreadableFile
from floodcache.data.download import DownloadError
from floodcache.data.raster import SCALES, RasterReading, UnreadableRaster
from floodcache.embed.background import ReaderDied
from floodcache.sam.checkpoints import CheckpointError
from floodcache.settings import (
    AUTO_PRECISION,
    ON_MISMATCH,
    RESIZE_METHODS,
    STAGE_PRECISIONS,
    OptionConflict,
)

USER_ERRORS = (
    CacheError,
    CheckpointError,
    DownloadError,
    UnreadableFile,
    UnreadableRaster,
    ReaderDied,
    FileExistsError,
    FileNotFoundError,
    ValueError,
)
PATH = click.Path(path_type=Path)
DEVICE_HELP = "torch device, e.g. cuda:0 or cpu [default: cuda if available]"


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a job scheduler's time limit): stops a command as Ctrl-C does."""


def user_errors(command: Callable) -> Callable:
    """Turn the library's expected errors, and a file system's (an output folder that cannot
    be written, a full disk), into a clean message and a non-zero exit; stop on Ctrl-C or
    SIGTERM keeping the finished work."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            with _sigterm_as_interrupt():
                return command(*args, **kwargs)
        except OptionConflict as err:  # the command's usage, as click shows a wrong option
            raise click.UsageError(str(err)) from err
        except USER_ERRORS as err:
            raise click.ClickException(str(err)) from err
        except OSError as err:
            raise click.ClickException(_file_system_error(err)) from err
        except KeyboardInterrupt as stop:
            how = "terminated" if isinstance(stop, Terminated) else "interrupted"
            # a command that keeps nothing of a stopped run says so on the exception (`kept`)
            resume = "finished work is kept; run the same command again to resume"
            click.echo(f"\n{how}: {getattr(stop, 'kept', resume)}.", err=True)
            sys.exit(128 + signal.SIGTERM if isinstance(stop, Terminated) else 130)

    return wrapper


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises `Terminated` in this (the main) thread while the command runs."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield  # a command called from another thread: only the main thread handles signals
        return
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _file_system_error(err: OSError) -> str:
    """An OSError as a message naming the file and what to do."""
    where = f"{err.filename}: " if err.filename else ""
    if err.errno == errno.ENOSPC:
        fix = "free some space (or choose a folder on another disk) and rerun"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "choose a folder you can write to, or get the permission, and rerun"
    else:
        fix = "check the path and rerun"
    return f"{where}{err.strerror or err}; {fix}"


def default(source: object, name: str) -> object:
    """The default of `name` in `source`: a config dataclass (or an instance of one, for a
    nested config), or a function's keyword."""
    if inspect.isfunction(source):
        return inspect.signature(source).parameters[name].default
    return getattr(source, name)


def option(
    *flags: str, source: object, name: str | None = None, unset: bool = False, **settings: Any
):
    """A click option whose default is `source`'s (see `default`), shown in --help. `name`:
    the config field, when it is not the option's own name. `unset`: the option is None
    when not given (the config tells it from its default, and refuses it where it means
    nothing), its default still shown in --help."""
    field = name or flags[-1].lstrip("-").replace("-", "_")
    value = default(source, field)
    if unset:  # click would show the None it is given
        settings["help"] = f"{settings.get('help', '')} [default: {value}]".strip()
        return click.option(*flags, field, default=None, **settings)
    settings.setdefault("show_default", True)
    return click.option(*flags, field, default=value, **settings)


def with_options(command: Callable, options: list) -> Callable:
    """Apply click options to `command`, the first of the list shown first in --help."""
    for each in reversed(options):
        command = each(command)
    return command


def data_options(source: object) -> Callable:
    """--data / --images / --masks / --on-mismatch, with `source`'s default for the last."""

    def apply(command: Callable) -> Callable:
        return with_options(
            command,
            [
                click.option(
                    "--data",
                    "data_dir",
                    type=PATH,
                    help="Folder in the Kaggle layout: Image/, Mask/, optional metadata.csv.",
                ),
                click.option(
                    "--images",
                    type=PATH,
                    help="Folder of images (with --masks), paired with masks by file stem.",
                ),
                click.option("--masks", type=PATH, help="Folder of masks."),
                option(
                    "--on-mismatch",
                    source=source,
                    type=click.Choice(ON_MISMATCH),
                    help="A mask whose size differs from its image: leave the pair out, or "
                    "resize the mask to the image (explicit opt-in).",
                ),
                click.option(
                    "--allow-outside-paths",
                    is_flag=True,
                    help="Let metadata.csv name files outside Image/ and Mask/ (absolute "
                    "paths, or up through ..); refused otherwise.",
                ),
                max_pixels_option(source),
            ],
        )

    return apply


def max_pixels_option(source: object) -> Callable:
    return option(
        "--max-pixels",
        source=source,
        type=click.IntRange(1),
        help="Largest image or mask read, in pixels (width x height); a larger one is "
        "refused before it is decoded (about 10 bytes a pixel).",
    )


def precision_option(source: object, stage: str, help: str) -> Callable:
    return option(
        "--precision",
        source=source,
        type=click.Choice([AUTO_PRECISION, *STAGE_PRECISIONS[stage]]),
        help=help,
    )


ENCODER_PRECISION_HELP = (
    "Encoder precision: auto is fp16 on a GPU; on a CPU bf16 where it has native bf16"
    " (AVX512_BF16, AMX), else fp32. The cache stores float16."
)
RESIZE_HELP = (
    "Resize to SAM's input: pil in the readers (exactly SamPredictor.set_image), or torch on "
    "the device (set_torch_image's interpolation; spares the readers each image's resize)."
)


def resize_option(source: object) -> Callable:
    return option(
        "--resize", source=source, type=click.Choice(list(RESIZE_METHODS)), help=RESIZE_HELP
    )


def _band_numbers(ctx, param, value: str | None) -> tuple[int, ...] | None:
    """'3,2,1' -> (3, 2, 1) (click callback)."""
    if value is None:
        return None
    try:
        return tuple(int(band) for band in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give band numbers, e.g. 3,2,1") from None


def raster_options(command: Callable, unset: bool = False) -> Callable:
    """--bands / --scale: how georeferenced rasters (GeoTIFF...) are shown to SAM (`unset`:
    None when not given, see `option`)."""
    return with_options(
        command,
        [
            click.option(
                "--bands",
                callback=_band_numbers,
                help="Georeferenced rasters: the bands shown to SAM as red,green,blue (e.g. "
                "4,3,2), or one band as grey [default: the bands whose colour is red, green "
                "and blue, else 1,2,3].",
            ),
            option(
                "--scale",
                source=RasterReading,
                unset=unset,
                type=click.Choice(list(SCALES)),
                help="Georeferenced rasters: how values become 8 bits. auto: uint8 as it is, "
                "others by percentile; percentile: per band, the 2nd to 98th percentile of "
                "the scene -> 0..255; dtype: the data type's range (uint16 0..65535, float "
                "0..1) -> 0..255.",
            ),
        ],
    )
