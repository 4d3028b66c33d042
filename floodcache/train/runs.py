"""Mask decoders to use: the pretrained one stored in a cache, and fine-tuned runs, as records
(their weights are read by `weights`, which needs torch; reading a run's record does not).

A run folder is what `train` writes (`save_run`): decoder.pt (a MaskDecoder state dict),
config.json (its TrainConfig, prompt strategies, the cache fingerprint, SAM's model type and
checkpoint sha256, the best epoch) and history.csv (one row per epoch). A decoder only makes
sense on embeddings of the SAM image encoder it was trained with, so every user of a run checks
that first (`sam_with_decoder` puts a run's decoder into its SAM).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from floodcache.cache.reader import Cache
from floodcache.utils.differences import refuse_if_different
from floodcache.utils.hashing import sha256_file
from floodcache.utils.lock import ProcessLock

if TYPE_CHECKING:
    import polars as pl

PRETRAINED = "pretrained"
DECODER, RECORD, HISTORY = "decoder.pt", "config.json", "history.csv"  # a run folder's files


@dataclass
class DecoderModel:
    """One mask decoder: `pretrained` or a fine-tuned run (named after its folder)."""

    name: str
    state: dict[str, np.ndarray] | None  # MaskDecoder state dict (None: not read, `describe_run`)
    sha256: str  # of decoder.pt; for `pretrained`, of the cache's stored weights
    run: Path | None = None
    record: dict = field(default_factory=dict)  # the run's config.json

    @property
    def trained_prompts(self) -> list[str]:
        return list(self.record.get("prompts", {}))


def checkpoint_sha256(cache: Cache) -> str:
    """sha256 of the SAM checkpoint the cache was embedded with, or RANDOM_WEIGHTS."""
    return str(cache.file.attrs["checkpoint_sha256"])


def pretrained(cache: Cache) -> DecoderModel:
    """The checkpoint's own mask decoder, as stored in the cache (sam/mask_decoder)."""
    state = cache.sam_state("mask_decoder")
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + np.ascontiguousarray(state[name]).tobytes())
    return DecoderModel(PRETRAINED, state, digest.hexdigest())


def is_finished(run: Path) -> bool:
    """Whether `run` holds a finished run (`save_run` moves a run in only when whole)."""
    return (Path(run) / DECODER).is_file() and (Path(run) / RECORD).is_file()


def refuse_to_replace(run: Path, overwrite: bool) -> None:
    """FileExistsError naming the fix where `run` holds a finished run, unless `overwrite`, or
    anything but a run or an empty folder: `save_run` replaces the folder whole, and what it
    held would be lost, --overwrite or not."""
    run = Path(run)
    if is_finished(run):
        if not overwrite:
            raise FileExistsError(
                f"{run} already holds a trained decoder; choose another --out, or pass --overwrite"
            )
    elif run.exists() and not (run.is_dir() and not any(run.iterdir())):
        raise FileExistsError(
            f"{run} exists and is not a run folder of train: the run would replace it and all "
            "it holds; choose another --out"
        )


def writing_run(run: Path) -> ProcessLock:
    """`<run>.lock`, held while `train` writes `run` and `<run>.partial`: a second `train`
    into the same folder stops at once, rather than both overwriting each other's epochs."""
    run = Path(run)
    run.parent.mkdir(parents=True, exist_ok=True)
    lock = run.with_name(run.name + ".lock")
    return ProcessLock(lock, f"another train is writing {run}", "or choose another --out")


def describe_run(run: Path) -> DecoderModel:
    """A finished run folder's record and its decoder's sha256, without its weights (`state`
    None): what a report needs, without torch. FileNotFoundError naming the fix otherwise."""
    run = Path(run)
    if not is_finished(run):
        raise FileNotFoundError(
            f"{run} is not a finished run (it needs {DECODER} and {RECORD}): train one "
            f"with `python cli.py train --cache FILE.h5 --out {run}`"
        )
    return DecoderModel(run.name, None, sha256_file(run / DECODER), run, read_record(run))


def read_record(run: Path) -> dict:
    """A run's config.json, checked to be a JSON object naming its SAM's model type;
    ValueError naming the file and the fix otherwise."""
    path = Path(run) / RECORD
    fix = f"train it again: `python cli.py train --cache FILE.h5 --out {run} --overwrite`"
    try:
        record = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get("model_type"), str):
        raise ValueError(f"{path} is not a run's record (no model_type in an object); {fix}")
    return record


def check_same_sam(model: DecoderModel, model_type: str, checkpoint: str, other: str) -> None:
    """ValueError unless `model` was trained on embeddings of this SAM (type, checkpoint sha256).

    `other` names what the model is combined with, for the message (a cache or checkpoint file).
    """
    ours = {"model_type": model_type, "checkpoint_sha256": checkpoint}
    refuse_if_different(
        {k: model.record.get(k) for k in ours},
        ours,
        f"{model.run} was trained on embeddings of another SAM than {other}",
        "use the run with the SAM (cache, checkpoint) it was trained on",
        ValueError,
        ("the run's SAM has", f"{other} has"),
    )


def read_history(run: Path) -> pl.DataFrame:
    """A run's history.csv: epoch, train_loss, train_iou, val_loss, val_iou, lr, seconds, ...

    polars is imported here, by `report` alone: embed, train, predict and bench run without
    it (a GPU machine set up for embedding and training need not have it)."""
    import polars as pl

    path = Path(run) / HISTORY
    try:
        history = pl.read_csv(path)
    except (OSError, pl.exceptions.PolarsError) as error:
        history, problem = None, str(error).splitlines()[0]
    else:
        columns = {"epoch", "seconds", "train_loss", "val_loss", "val_iou"}
        problem = None if columns <= set(history.columns) else "it lacks epoch columns"
    if problem is None and history["seconds"].dtype.is_numeric():
        return history
    raise ValueError(
        f"{path} is damaged ({problem or 'its seconds are not numbers'}): train the run again "
        f"(`python cli.py train --cache FILE.h5 --out {run} --overwrite`)"
    )
