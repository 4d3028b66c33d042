"""SAM's official checkpoints: where each lives, how to recognise a good copy, and where
floodcache looks for one (`data.download` fetches them)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from floodcache.utils.program import command, option, typed

SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything"
DEFAULT_CHECKPOINT_DIR = Path("checkpoints")  # relative to the working directory
CHECKPOINT_DIR_ENV = "FLOODCACHE_CHECKPOINT_DIR"  # overrides DEFAULT_CHECKPOINT_DIR when set
RANDOM_WEIGHTS = "random-weights"  # recorded instead of a checkpoint's sha256 (no checkpoint)


@dataclass(frozen=True)
class CheckpointSpec:
    """Where one official SAM checkpoint lives and how to recognise a good copy."""

    url: str
    sha256: str | None  # None: no published checksum known here, so only the size is checked
    size: int  # bytes; also the progress bar's total and the resume point's upper bound

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


# Same names as segment-anything's `sam_model_registry`. vit_b and vit_h carry checksums taken
# from the official files. For vit_l no sha256 was available to verify here and its size is the
# commonly cited one, so a vit_l download is accepted on its size alone, with a warning that
# prints the file's sha256 for the user to compare.
CHECKPOINTS: dict[str, CheckpointSpec] = {
    "vit_b": CheckpointSpec(
        f"{SAM_BASE_URL}/sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375042383,
    ),
    "vit_l": CheckpointSpec(f"{SAM_BASE_URL}/sam_vit_l_0b3195.pth", None, 1249524607),
    "vit_h": CheckpointSpec(
        f"{SAM_BASE_URL}/sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        2564550879,
    ),
}


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or not a SAM checkpoint of the asked type."""


class CheckpointNotFound(FileNotFoundError):
    """No SAM checkpoint where one was looked for; the message names the command that fetches it."""


def spec_of(model_type: str) -> CheckpointSpec:
    if model_type not in CHECKPOINTS:
        raise ValueError(
            f"unknown model type {model_type!r}; choose one of {', '.join(CHECKPOINTS)}"
        )
    return CHECKPOINTS[model_type]


def _checkpoint_dir(checkpoint_dir: Path | str | None) -> Path:
    """The checkpoint folder; ValueError naming where it was given when it is a file."""
    if checkpoint_dir is not None:
        folder, given = Path(checkpoint_dir), "--checkpoint-dir"
    elif os.environ.get(CHECKPOINT_DIR_ENV):
        folder, given = Path(os.environ[CHECKPOINT_DIR_ENV]), f"${CHECKPOINT_DIR_ENV}"
    else:
        folder, given = Path(DEFAULT_CHECKPOINT_DIR), "the default checkpoint folder"
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"{given} names {folder}, a file, not a folder: point {given} at a folder for SAM "
            "checkpoints (or move the file away)"
        )
    return folder


def default_checkpoint_path(model_type: str, checkpoint_dir: Path | str | None = None) -> Path:
    """Where `download_checkpoint` puts `model_type`'s official checkpoint.

    `checkpoint_dir` wins over $FLOODCACHE_CHECKPOINT_DIR, which wins over ./checkpoints.
    """
    return _checkpoint_dir(checkpoint_dir) / spec_of(model_type).filename


def download_command(model_type: str, checkpoint_dir: Path) -> str:
    directory = shlex.quote(str(checkpoint_dir))
    return typed("download", option("model_type"), model_type, option("checkpoint_dir"), directory)


def find_checkpoint(
    model_type: str, checkpoint: Path | None = None, checkpoint_dir: Path | None = None
) -> Path:
    """The checkpoint file to load: `checkpoint` when given, else the default-location file.

    Raises CheckpointNotFound, naming the file looked for and the command that fetches it.
    """
    if checkpoint is not None:
        path = Path(checkpoint)
        official = default_checkpoint_path(model_type, path.parent)
    else:
        path = official = default_checkpoint_path(model_type, checkpoint_dir)
    if path.is_file():
        return path
    fetch_dir = official.parent
    lines = [
        f"No SAM {model_type} checkpoint at {path}.",
        f"Fetch the official one into {official} with:",
        f"  {download_command(model_type, fetch_dir)}",
        "or pass the file you have with --checkpoint FILE.",
        "For a test-only run without pretrained weights, pass --random-weights "
        "(every number it computes is meaningless).",
    ]
    part = official.with_name(official.name + ".part")
    if part.exists():
        lines.insert(3, f"(A partial download is in {part}: that command resumes it.)")
    raise CheckpointNotFound("\n".join(lines))


def fetch_hint(model_type: str) -> str:
    """How to get a checkpoint of `model_type`: the download command where one exists."""
    if model_type in CHECKPOINTS:
        return f"fetch it with {command('download', option('model_type'), model_type)}"
    return (
        f"{model_type} has no official checkpoint: pass --random-weights for a run embedded "
        f"with it ({command('export', option('random_weights'), '...')} writes that SAM as a "
        "file), or "
        "pass the file you made with --checkpoint"
    )


def resolve_checkpoint(
    model_type: str, checkpoint: Path | None, random_weights: bool
) -> Path | None:
    """The checkpoint file a run loads, None for random weights (an explicit opt-in).

    Without `checkpoint`, the official file is looked for in the default checkpoint folder.
    Raises CheckpointNotFound or CheckpointError, naming the fix, before any work is done."""
    if random_weights and checkpoint is not None:
        raise CheckpointError("pass either --checkpoint or --random-weights, not both")
    if random_weights:
        return None
    if model_type in CHECKPOINTS:  # official weights exist: look in the default place
        return find_checkpoint(model_type, checkpoint)
    if checkpoint is None:
        raise CheckpointError(
            f"{model_type} has no official checkpoint: pass --checkpoint FILE, or "
            "--random-weights for a smoke test whose numbers mean nothing"
        )
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} does not exist: {fetch_hint(model_type)}")
    return Path(checkpoint)
