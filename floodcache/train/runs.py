"""Mask decoders to use: the pretrained one stored in a cache, and fine-tuned runs.

A run folder is what `train` writes (`save_run`): decoder.pt (a MaskDecoder state dict),
config.json (its TrainConfig, prompt strategies, the cache fingerprint, SAM's model type and
checkpoint sha256, the best epoch) and history.csv (one row per epoch). A decoder only makes
sense on embeddings of the SAM image encoder it was trained with, so every user of a run checks
that first (`sam_with_decoder` puts a run's decoder into its SAM).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.modeling import Sam

from floodcache.cache.reader import Cache
from floodcache.sam.checkpoints import CheckpointError
from floodcache.sam.model import RANDOM_WEIGHTS, load_sam, read_weights, save_weights
from floodcache.utils.atomic import write_folder_whole
from floodcache.utils.differences import refuse_if_different
from floodcache.utils.hashing import sha256_file
from floodcache.utils.lock import ProcessLock

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)
PRETRAINED = "pretrained"
DECODER, RECORD, HISTORY = "decoder.pt", "config.json", "history.csv"  # a run folder's files


@dataclass
class DecoderModel:
    """One mask decoder: `pretrained` or a fine-tuned run (named after its folder)."""

    name: str
    state: dict[str, np.ndarray]  # MaskDecoder state dict
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


def save_run(
    run: Path, decoder: dict[str, torch.Tensor], record: dict, history: list[dict]
) -> None:
    """Write a run folder whole (`write_folder_whole`): a full disk leaves the earlier run,
    or none, and a message naming the folder. history: one dict per epoch, the same keys in
    each."""

    def fill(folder: Path) -> None:
        save_weights({k: v.cpu() for k, v in decoder.items()}, folder / DECODER)
        (folder / RECORD).write_text(json.dumps(record, indent=1))
        with open(folder / HISTORY, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    write_folder_whole(Path(run), fill, "give --out a folder you can write to, with room")


def load_run(run: Path) -> DecoderModel:
    """The decoder of a finished run folder; FileNotFoundError naming the fix otherwise."""
    run = Path(run)
    if not is_finished(run):
        raise FileNotFoundError(
            f"{run} is not a finished run (it needs {DECODER} and {RECORD}): train one "
            f"with `python cli.py train --cache FILE.h5 --out {run}`"
        )
    weights = run / DECODER
    fix = f"train it again: `python cli.py train --cache FILE.h5 --out {run} --overwrite`"
    state = read_weights(weights, "a mask decoder's weights (a state dict)", fix)
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{weights} is not a mask decoder's state dict: {fix}")
    sha256 = sha256_file(weights)
    record = json.loads((run / RECORD).read_text())
    return DecoderModel(run.name, {k: v.numpy() for k, v in state.items()}, sha256, run, record)


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


def decoder_models(cache: Cache, runs: tuple[Path, ...]) -> list[DecoderModel]:
    """`pretrained`, then each run, checked against the cache.

    A run of another SAM raises ValueError; one trained from another cache of the same SAM
    only gets a warning, since its training images may be in this cache's evaluation split.
    """
    models = [pretrained(cache)]
    for run in runs:
        model = load_run(run)
        check_same_sam(model, cache.model_type, checkpoint_sha256(cache), str(cache.path))
        if model.record.get("cache_fingerprint") != cache.fingerprint:
            log.warning(
                "%s was trained from another cache than %s: its training images may be in "
                "the evaluated split",
                model.run,
                cache.path,
            )
        models.append(model)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(
            f"two models share a name in {names}: a run is named after its folder, and "
            f"{PRETRAINED!r} is reserved; rename a run folder"
        )
    return models


def read_history(run: Path) -> pl.DataFrame:
    """A run's history.csv: epoch, train_loss, train_iou, val_loss, val_iou, lr, seconds, ...

    polars is imported here, by `report` alone: embed, train, predict and bench run without
    it (a GPU machine set up for embedding and training need not have it)."""
    import polars as pl

    return pl.read_csv(Path(run) / HISTORY)


def sam_with_decoder(checkpoint: Path, run: Path) -> tuple[Sam, DecoderModel]:
    """The run's SAM (model type from its config.json) with the run's mask decoder loaded.

    The checkpoint must be the one the run's cache was embedded with (sha256 checked): the
    decoder learnt from that image encoder's embeddings. A run made with random weights
    accepts any checkpoint of its model type, with a warning.
    """
    model = load_run(run)
    model_type = model.record["model_type"]
    sam = load_sam(model_type, checkpoint)
    if model.record.get("checkpoint_sha256") == RANDOM_WEIGHTS:
        log.warning(
            "%s was trained on embeddings of an untrained SAM (random weights): its masks mean "
            "nothing, whatever checkpoint it is combined with",
            run,
        )
    else:
        check_same_sam(model, model_type, sha256_file(checkpoint), str(checkpoint))
    sam.mask_decoder.load_state_dict({k: torch.from_numpy(v) for k, v in model.state.items()})
    return sam.eval(), model
