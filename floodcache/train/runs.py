"""Mask decoders to use: the pretrained one stored in a cache, and fine-tuned runs, as records
(their weights are read by `weights`, which needs torch; reading a run's record does not).

A run folder is what `train` writes (`save_run`): decoder.pt (a MaskDecoder state dict),
config.json (`RunRecord`: its TrainConfig, prompt strategies, the cache fingerprint, SAM's
model type and checkpoint sha256, the best epoch) and history.csv (one row per epoch). A
decoder only makes sense on embeddings of the SAM image encoder it was trained with, so every
user of a run checks that first (`sam_with_decoder` puts a run's decoder into its SAM).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from floodcache.cache.reader import Cache
from floodcache.train.config import TrainConfig
from floodcache.utils.hashing import sha256_file
from floodcache.utils.identity import identity_of, refuse_other
from floodcache.utils.lock import ProcessLock
from floodcache.utils.program import command, option

if TYPE_CHECKING:
    import polars as pl

    from floodcache.prompts import PromptStrategy

PRETRAINED = "pretrained"
DECODER, RECORD, HISTORY = "decoder.pt", "config.json", "history.csv"  # a run folder's files


@dataclass
class RunRecord:
    """A run's config.json, read and written here alone: what trained its decoder (the
    TrainConfig, its prompt strategies, the cache and SAM of its embeddings) and its best
    epoch. The file's keys are those runs made before wrote; a decoder made without `train`
    (bench's) has no config, cache or epochs."""

    model_type: str
    checkpoint_sha256: str  # of the SAM checkpoint the cache was embedded with
    # strategy name -> {"oracle": bool, "multimask": bool}, in the training mix's order
    prompts: dict[str, dict[str, bool]]
    config: TrainConfig | None = None
    cache_fingerprint: str | None = None
    best_epoch: int | None = None
    best_val_iou: float | None = None
    diverged_epoch: int | None = None  # where training stopped, its loss or weights not finite

    @staticmethod
    def prompts_of(strategies: list[PromptStrategy]) -> dict[str, dict[str, bool]]:
        return {s.name: {"oracle": s.oracle, "multimask": s.multimask} for s in strategies}

    @property
    def identity(self) -> dict:
        """What makes the run what it is (`run_identity`); {} for a decoder made without a
        TrainConfig."""
        if self.config is None:
            return {}
        return run_identity(self.config, self.cache_fingerprint)

    def write(self, folder: Path) -> None:
        """config.json in `folder`; keys without a value are left out."""
        record = {
            "config": None if self.config is None else _as_json(asdict(self.config)),
            "prompts": self.prompts,
            "cache_fingerprint": self.cache_fingerprint,
            "model_type": self.model_type,
            "checkpoint_sha256": self.checkpoint_sha256,
            "best_epoch": self.best_epoch,
            "best_val_iou": self.best_val_iou,
            "diverged_epoch": self.diverged_epoch,
        }
        text = json.dumps({k: v for k, v in record.items() if v is not None}, indent=1)
        (Path(folder) / RECORD).write_text(text)

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        """The config.json of the run `folder`; ValueError naming the file and the fix where
        it is not a run's record."""
        path = Path(folder) / RECORD
        fix = "train it again: " + command(
            "train", option("cache"), "FILE.h5", option("out"), folder, option("overwrite")
        )
        try:
            record = json.loads(path.read_bytes())
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path} is not valid JSON ({err}); {fix}") from None
        try:
            config = record.get("config")
            return cls(
                model_type=record["model_type"],
                checkpoint_sha256=record["checkpoint_sha256"],
                prompts=record.get("prompts", {}),
                config=None if config is None else _train_config(config),
                cache_fingerprint=record.get("cache_fingerprint"),
                best_epoch=record.get("best_epoch"),
                best_val_iou=record.get("best_val_iou"),
                diverged_epoch=record.get("diverged_epoch"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path} is not a run's record ({err!r}): {fix}") from err


def run_identity(config: TrainConfig, cache_fingerprint: str | None) -> dict:
    """What makes a run what it is: the fields `TrainConfig` declares, and the cache it
    learnt from."""
    return identity_of(config, cache_fingerprint=cache_fingerprint)


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _train_config(recorded: dict) -> TrainConfig:
    """The TrainConfig a run recorded; a setting it does not know (a run made before the
    setting existed) takes its default, one no longer a setting is dropped."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in recorded.items() if k in known})
    return dataclasses.replace(config, cache=Path(config.cache), out=config.run_folder)


@dataclass
class DecoderModel:
    """One mask decoder: `pretrained` or a fine-tuned run (named after its folder)."""

    name: str
    state: dict[str, np.ndarray] | None  # MaskDecoder state dict (None: not read, `describe_run`)
    sha256: str  # of decoder.pt; for `pretrained`, of the cache's stored weights
    run: Path | None = None
    record: RunRecord | None = None  # the run's config.json; None for `pretrained`

    @property
    def trained_prompts(self) -> list[str]:
        return [] if self.record is None else list(self.record.prompts)

    @property
    def run_record(self) -> RunRecord:
        """The record of a fine-tuned run (not `pretrained`, which has none)."""
        assert self.record is not None, f"{self.name} is not a fine-tuned run"
        return self.record

    @property
    def folder(self) -> Path:
        """The folder of a fine-tuned run (not `pretrained`, which has none)."""
        assert self.run is not None, f"{self.name} is not a fine-tuned run"
        return self.run

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The state dict, for a model read with its weights (not `describe_run`'s)."""
        assert self.state is not None, f"{self.name}'s weights were not read"
        return self.state


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
            f"with {command('train', option('cache'), 'FILE.h5', option('out'), run)}"
        )
    record = RunRecord.read(run)
    return DecoderModel(run.name, None, sha256_file(run / DECODER), run, record)


def check_same_sam(model: DecoderModel, model_type: str, checkpoint: str, other: str) -> None:
    """ValueError unless `model` was trained on embeddings of this SAM (type, checkpoint sha256).

    `other` names what the model is combined with, for the message (a cache or checkpoint file).
    """
    record = model.run_record
    refuse_other(
        {"model_type": record.model_type, "checkpoint_sha256": record.checkpoint_sha256},
        {"model_type": model_type, "checkpoint_sha256": checkpoint},
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
        problem = str(error).splitlines()[0]
    else:
        columns = {"epoch", "seconds", "train_loss", "val_loss", "val_iou"}
        if not columns <= set(history.columns):
            problem = "it lacks epoch columns"
        elif history["seconds"].dtype.is_numeric():
            return history
        else:
            problem = "its seconds are not numbers"
    raise ValueError(
        f"{path} is damaged ({problem}): train the run again "
        f"({command('train', option('cache'), 'FILE.h5', option('out'), run, option('overwrite'))})"
    )
