"""`export`: the full SAM checkpoint (a state dict of the whole `Sam` module, like the official
files) with `mask_decoder.*` replaced by the run's decoder, so that
`segment_anything.sam_model_registry[model_type](checkpoint=FILE)` loads the fine-tuned SAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from floodcache.sam.model import save_weights
from floodcache.train.weights import sam_with_decoder
from floodcache.utils.atomic import write_whole


@dataclass
class ExportConfig:
    # the SAM checkpoint the run's cache was embedded with (None: the official one, or with
    # random_weights the seeded untrained SAM of a random-weights run)
    checkpoint: Path | None
    decoder: Path  # run folder written by `train`
    out: Path  # the merged checkpoint (.pth)
    overwrite: bool = False
    random_weights: bool = False  # for a run embedded with --random-weights


def run_export(config: ExportConfig) -> Path:
    """Write the SAM checkpoint with the run's mask decoder merged in; returns its path."""
    out = Path(config.out)
    same = config.checkpoint is not None and Path(config.checkpoint).resolve() == out.resolve()
    if out.exists() and same:
        raise ValueError(f"--out {out} is the SAM checkpoint itself: give the export another name")
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; choose another --out, or pass --overwrite")
    sam, _ = sam_with_decoder(config.checkpoint, config.decoder, config.random_weights)
    # every Sam key, as the official checkpoints hold
    write_whole(out, lambda tmp: save_weights(sam.state_dict(), tmp))
    return out
