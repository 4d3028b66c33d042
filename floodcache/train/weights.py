"""The weights of fine-tuned runs: written whole (`save_run`), read back safely (`load_run`,
`weights_only`), checked against the SAM they belong to, and put into SAM."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch

from floodcache.cache.reader import Cache
from floodcache.sam.checkpoints import RANDOM_WEIGHTS, CheckpointError, resolve_checkpoint
from floodcache.sam.model import load_or_random_sam, load_sam, read_weights, save_weights
from floodcache.sam.modeling import Sam
from floodcache.train.runs import (
    DECODER,
    HISTORY,
    PRETRAINED,
    DecoderModel,
    RunRecord,
    check_same_sam,
    checkpoint_sha256,
    describe_run,
    pretrained,
)
from floodcache.utils.atomic import write_folder_whole
from floodcache.utils.hashing import sha256_file
from floodcache.utils.program import command, option

log = logging.getLogger(__name__)


def non_finite(state: dict) -> str | None:
    """The name of the first weight of a state dict (tensors or arrays) holding NaN or
    infinity, or None when every weight is finite: a diverged training's decoder masks
    nothing and scores NaN, and must be neither kept nor used."""
    for name, value in state.items():
        tensor = torch.as_tensor(value)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_finite(state: dict, what: str, fix: str) -> None:
    """CheckpointError naming `what`, the weight and `fix` unless every weight is finite."""
    name = non_finite(state)
    if name is not None:
        raise CheckpointError(
            f"{what} has weights that are not finite ({name} holds NaN or "
            f"infinity: its training diverged); {fix}"
        )


def save_run(
    run: Path, decoder: dict[str, torch.Tensor], record: RunRecord, history: list[dict]
) -> None:
    """Write a run folder whole (`write_folder_whole`): a full disk leaves the earlier run,
    or none, and a message naming the folder. history: one dict per epoch, the same keys in
    each. A decoder with weights that are not finite is never written (CheckpointError)."""
    check_finite(decoder, "the trained decoder", "nothing was written: train with a smaller --lr")

    def fill(folder: Path) -> None:
        save_weights({k: v.cpu() for k, v in decoder.items()}, folder / DECODER)
        record.write(folder)
        with open(folder / HISTORY, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    write_folder_whole(Path(run), fill, "give --out a folder you can write to, with room")


def load_run(run: Path) -> DecoderModel:
    """The decoder of a finished run folder; FileNotFoundError naming the fix otherwise."""
    described = describe_run(run)  # FileNotFoundError naming the fix for an unfinished run
    run, weights = described.folder, described.folder / DECODER
    again = command("train", option("cache"), "FILE.h5", option("out"), run, option("overwrite"))
    fix = f"train it again: {again}"
    state = read_weights(weights, "a mask decoder's weights (a state dict)", fix)
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{weights} is not a mask decoder's state dict: {fix}")
    _check_layout(state, weights, fix)
    check_finite(state, str(weights), fix)
    described.state = {k: v.numpy() for k, v in state.items()}
    return described


def _check_layout(state: dict[str, torch.Tensor], weights: Path, fix: str) -> None:
    """CheckpointError naming `weights` and `fix` unless `state` has exactly a MaskDecoder's
    weights and shapes (a whole SAM's state dict, or another model's, has others)."""
    from floodcache.sam.decoder import build_mask_decoder

    expected = {k: tuple(v.shape) for k, v in build_mask_decoder().state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found == expected:
        return
    missing, extra = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    shapes = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    detail = "; ".join(
        f"{what} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        for what, names in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes))
        if names
    )
    raise CheckpointError(f"{weights} is not SAM's mask decoder ({detail}): {fix}")


def decoder_models(cache: Cache, runs: tuple[Path, ...]) -> list[DecoderModel]:
    """`pretrained`, then each run, checked against the cache.

    A run of another SAM raises ValueError; one trained from another cache of the same SAM
    only gets a warning, since its training images may be in this cache's evaluation split.
    """
    models = [pretrained(cache)]
    for run in runs:
        model = load_run(run)
        check_same_sam(model, cache.model_type, checkpoint_sha256(cache), str(cache.path))
        if model.run_record.cache_fingerprint != cache.fingerprint:
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


def sam_with_decoder(
    checkpoint: Path | None, run: Path, random_weights: bool = False
) -> tuple[Sam, DecoderModel]:
    """The run's SAM (model type from its config.json) with the run's mask decoder loaded.

    The checkpoint must be the one the run's cache was embedded with (sha256 checked): the
    decoder learnt from that image encoder's embeddings. Without `checkpoint`, the official
    file of the model type in the default folder. A run made with random weights accepts any
    checkpoint of its model type, with a warning; with `random_weights` it gets the same
    seeded untrained SAM that embedded its cache (`load_or_random_sam`), the only way to use
    a model type without official weights (vit_tiny) that no file was made for.
    """
    model = load_run(run)
    model_type = model.run_record.model_type
    made_random = model.run_record.checkpoint_sha256 == RANDOM_WEIGHTS
    if random_weights:
        if not made_random:
            raise CheckpointError(
                f"{run} was trained on embeddings of a real SAM checkpoint, not random "
                "weights: pass that file with --checkpoint instead of --random-weights"
            )
        if checkpoint is not None:
            raise CheckpointError("pass either --checkpoint or --random-weights, not both")
        sam, _ = load_or_random_sam(model_type, None, True)
        sam.mask_decoder.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
        return sam.eval(), model
    if checkpoint is None and made_random:
        raise CheckpointError(
            f"{run} was trained on embeddings of an untrained SAM (random weights): pass "
            "--random-weights to rebuild that same SAM (its masks mean nothing)"
        )
    checkpoint = resolve_checkpoint(model_type, checkpoint, False)
    assert checkpoint is not None, "without random weights a checkpoint is resolved to a file"
    sam = load_sam(model_type, checkpoint)
    if made_random:
        log.warning(
            "%s was trained on embeddings of an untrained SAM (random weights): its masks mean "
            "nothing, whatever checkpoint it is combined with",
            run,
        )
    else:
        check_same_sam(model, model_type, sha256_file(checkpoint), str(checkpoint))
    sam.mask_decoder.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
    return sam.eval(), model
