"""Mask decoders to use: the pretrained one stored in a cache, and fine-tuned runs.

A run folder is what `train` writes: decoder.pt (a MaskDecoder state dict), config.json (its
TrainConfig, prompt strategies, the cache fingerprint, SAM's model type and checkpoint sha256,
the best epoch) and history.csv (one row per epoch). A decoder only makes sense on embeddings of
the SAM image encoder it was trained with, so every user of a run checks that first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from floodcache.cache import Cache, config_difference
from floodcache.download import sha256_file

log = logging.getLogger(__name__)
PRETRAINED = "pretrained"
RANDOM_WEIGHTS = "random-weights"  # the checkpoint_sha256 of a cache embedded with no checkpoint


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


def load_run(run: Path) -> DecoderModel:
    """The decoder of a finished run folder; FileNotFoundError naming the fix otherwise."""
    run = Path(run)
    weights, config_file = run / "decoder.pt", run / "config.json"
    if not weights.is_file() or not config_file.is_file():
        raise FileNotFoundError(
            f"{run} is not a finished run (it needs decoder.pt and config.json): train one "
            f"with `python cli.py train --cache FILE.h5 --out {run}`"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    sha256 = sha256_file(weights)
    record = json.loads(config_file.read_text())
    return DecoderModel(run.name, {k: v.numpy() for k, v in state.items()}, sha256, run, record)


def check_same_sam(model: DecoderModel, model_type: str, checkpoint: str, other: str) -> None:
    """ValueError unless `model` was trained on embeddings of this SAM (type, checkpoint sha256).

    `other` names what the model is combined with, for the message (a cache or checkpoint file).
    """
    ours = {"model_type": model_type, "checkpoint_sha256": checkpoint}
    diff = config_difference(
        {k: model.record.get(k) for k in ours}, ours, "the run's SAM has", f"{other} has"
    )
    if diff:
        raise ValueError(
            f"{model.run} was trained on embeddings of another SAM than {other}:\n  "
            + "\n  ".join(diff)
            + "\nuse the run with the SAM (cache, checkpoint) it was trained on"
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
    """A run's history.csv: epoch, train_loss, train_iou, val_loss, val_iou, lr, seconds, ..."""
    return pl.read_csv(Path(run) / "history.csv")
