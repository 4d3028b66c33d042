"""SAM built with random weights or loaded from a checkpoint, for every model type.

A checkpoint file holds a plain state dict of the whole `Sam` module (keys `image_encoder.*`,
`prompt_encoder.*`, `mask_decoder.*`), as the official files do. Running without one is an
explicit opt-in (`random_weights`) that warns loudly: every number it gives is meaningless.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from floodcache.sam.checkpoints import (
    RANDOM_WEIGHTS,
    CheckpointError,
    fetch_hint,
    resolve_checkpoint,
)
from floodcache.sam.modeling import Sam, _build_sam
from floodcache.settings import MODEL_TYPES
from floodcache.utils.hashing import sha256_file

log = logging.getLogger(__name__)


def build_sam(model_type: str = "vit_b") -> Sam:
    """A SAM model of `model_type` with random weights, in eval mode, on the CPU."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"unknown model type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}"
        )
    spec = MODEL_TYPES[model_type]
    return _build_sam(
        encoder_embed_dim=spec.embed_dim,
        encoder_depth=spec.depth,
        encoder_num_heads=spec.num_heads,
        encoder_global_attn_indexes=list(spec.global_attn_indexes),
        checkpoint=None,
    )


def load_sam(model_type: str, checkpoint: Path) -> Sam:
    """Build SAM of `model_type` and load `checkpoint` (a state dict of the whole `Sam` module).

    Raises CheckpointError naming the file and what to do when it is missing, unreadable
    (truncated download), not a SAM state dict, or of another model type.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} does not exist: {fetch_hint(model_type)}, "
            "or pass --checkpoint FILE"
        )
    fix = f"it is probably truncated or not a SAM checkpoint: {fetch_hint(model_type)}"
    state_dict = read_weights(checkpoint, "a SAM checkpoint", fix)
    if not any(str(k).startswith("image_encoder.") for k in state_dict):
        raise CheckpointError(
            f"{checkpoint} is not a SAM checkpoint: expected a state dict with "
            "image_encoder.*, prompt_encoder.* and mask_decoder.* keys"
        )
    sam = build_sam(model_type)
    try:
        sam.load_state_dict(state_dict)
    except RuntimeError as err:
        found = guess_model_type(state_dict)
        hint = f" it looks like a {found} checkpoint: pass --model-type {found}" if found else ""
        raise CheckpointError(
            f"{checkpoint} does not fit SAM {model_type};{hint or ' ' + str(err)[:300]}"
        ) from err
    return sam


def guess_model_type(state_dict: dict) -> str | None:
    """The registered model type whose encoder width and depth match a state dict, if any."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    depth = 1 + max(
        (int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")),
        default=-1,
    )
    for name, spec in MODEL_TYPES.items():
        if spec.embed_dim == weight.shape[0] and spec.depth == depth:
            return name
    return None


def load_or_random_sam(
    model_type: str, checkpoint: Path | None, random_weights: bool
) -> tuple[Sam, str]:
    """SAM and the sha256 of its checkpoint, or random weights when explicitly asked for.

    Without `checkpoint`, the official file is looked for in the default checkpoint folder
    (CheckpointNotFound says how to download it).

    Random weights (seeded, so smoke runs repeat) record the marker RANDOM_WEIGHTS instead of
    a sha256, and warn loudly: every number computed with them is meaningless.
    """
    checkpoint = resolve_checkpoint(model_type, checkpoint, random_weights)
    if checkpoint is not None:
        return load_sam(model_type, checkpoint), sha256_file(checkpoint)
    warn_random_weights()
    torch.manual_seed(0)  # the same random SAM every time, so smoke runs are reproducible
    return build_sam(model_type), RANDOM_WEIGHTS


def warn_random_weights() -> None:
    """Say loudly that a run uses an untrained SAM."""
    log.warning(  # the banner starts on the WARNING line itself: no empty line before it
        "%s\nRANDOM WEIGHTS: this SAM was never trained. Embeddings, masks and metrics "
        "computed with it are MEANINGLESS; use it only to test the pipeline.\n%s",
        "!" * 78,
        "!" * 78,
    )


def save_weights(weights: dict, path: Path) -> None:
    """`torch.save` through a file this process opened: a full disk then raises an OSError
    naming the file, where torch's own writer raises a RuntimeError that names nothing."""
    with open(path, "wb") as file:
        torch.save(weights, file)


def read_weights(path: Path, what: str, fix: str) -> dict:
    """The dict a file saved with `torch.save` holds, loaded safely: `weights_only`, so tensors
    and plain containers only, never code. CheckpointError naming `path`, what it should be
    and `fix` when it cannot be read, holds other objects, or is not a dict."""
    if Path(path).is_file() and not Path(path).stat().st_size:
        raise CheckpointError(f"{path} is empty, not {what}: its writing never finished; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} is not {what}: it holds Python objects other than tensors, which "
            f"floodcache does not load (they could run code); {fix}"
        ) from err
    except Exception as err:  # torch raises many types for a damaged zip or pickle
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path} cannot be read as {what} ({type(err).__name__}: {reason}); {fix}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not {what} (it holds a {type(state).__name__}); {fix}")
    return state
