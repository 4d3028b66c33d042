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
    checkpoint: Path  # the SAM checkpoint the run's cache was embedded with
    decoder: Path  # run folder written by `train`
    out: Path  # the merged checkpoint (.pth)
    overwrite: bool = False


def run_export(config: ExportConfig) -> Path:
    """Write the SAM checkpoint with the run's mask decoder merged in; returns its path."""
    out = Path(config.out)
    if out.exists() and out.resolve() == Path(config.checkpoint).resolve():
        raise ValueError(f"--out {out} is the SAM checkpoint itself: give the export another name")
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; choose another --out, or pass --overwrite")
    sam, _ = sam_with_decoder(config.checkpoint, config.decoder)
    # every Sam key, as the official checkpoints hold
    write_whole(out, lambda tmp: save_weights(sam.state_dict(), tmp))
    return out
