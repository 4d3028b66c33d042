"""Damaged caches: named by verify, refused by train."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import cli
from floodcache.cache import verify as verify_module
from floodcache.cache.format import CONFIG_SHA256, METADATA_SHA256, SAM_SHA256, CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import run_evaluate
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from tests.helpers import (
    PROJECT,
    embed_command,
    kill_after_parts,
)


@pytest.fixture
def cache_copy(tiny_cache, tmp_path) -> Path:
    copy = tmp_path / "copy.h5"
    shutil.copy(tiny_cache, copy)
    return copy


def test_truncated_cache_is_refused(cache_copy, tmp_path):
    with open(cache_copy, "r+b") as f:
        f.truncate(cache_copy.stat().st_size // 2)
    with pytest.raises(CacheError, match="damaged or truncated"):
        verify(cache_copy)
    with pytest.raises(CacheError, match="damaged or truncated"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    cli = subprocess.run(
        [sys.executable, str(PROJECT / "cli.py"), "verify", "--cache", str(cache_copy)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "damaged or truncated" in cli.stderr


def flip_embedding_bytes(path: Path, row: int) -> None:
    with h5py.File(path, "r") as f:
        offset = f["embeddings"].id.get_chunk_info(row).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + 1000)
        byte = f.read(1)
        f.seek(offset + 1000)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_flipped_bytes_are_named_and_never_trained_on(cache_copy, tmp_path):
    with Cache.open(cache_copy) as opened:
        row = int(opened.rows("train")[2])
        image_id, view = opened.column("image_id")[row], opened.column("view")[row]
    flip_embedding_bytes(cache_copy, row)
    report = verify(cache_copy)
    assert not report.ok
    assert any(
        f"image {image_id}, view {view}" in p or f"view {row}:" in p for p in report.problems
    ), report.problems
    with pytest.raises(CacheError, match="is damaged"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    assert not (tmp_path / "run").exists()


def test_embed_on_a_damaged_complete_cache_exits_with_an_error(
    tiny_data, tiny_checkpoint, cache_copy
):
    """The same command again on a finished cache has nothing to do: it says that the cache
    is damaged, with a non-zero status, rather than "nothing to do" and 0."""
    flip_embedding_bytes(cache_copy, 0)
    options = ["--data", tiny_data, "--checkpoint", tiny_checkpoint, "--model-type", "vit_tiny"]
    options += ["--augment", "1", "--workers", "0", "--cache", cache_copy]
    result = CliRunner().invoke(cli.main, ["embed", *map(str, options)])
    assert result.exit_code == 1, result.output
    assert "DAMAGED" in result.output and "rebuild it with" in result.output


def test_incomplete_cache_is_refused_by_train(tiny_data, tiny_checkpoint, tmp_path):
    cache = tmp_path / "half.h5"
    kill_after_parts(
        embed_command(tiny_data, tiny_checkpoint, cache), cache.with_name("half.h5.parts"), 2
    )
    with pytest.raises(CacheError, match="Run the same command again"):
        run_train(TrainConfig(cache=cache, out=tmp_path / "run", epochs=1, progress=False))


def _rewrite_embedding(f: h5py.File) -> None:
    row = list(f["split"].asstr()[:]).index("train")
    f["embeddings"][row] = f["embeddings"][row] + 1  # through HDF5: its checksum still holds


def _flip_bit(name: str, row: int = 0):
    def flip(f: h5py.File) -> None:
        values = np.array(f[name][row]).reshape(-1)
        values.view(np.uint8)[0] ^= 1
        f[name][row] = values.reshape(f[name].shape[1:])

    return flip


def _set_column(name: str, value):
    def change(f: h5py.File) -> None:
        f[name][0] = value

    return change


def _zero_mask_decoder(f: h5py.File) -> None:
    f["sam/mask_decoder"].visititems(
        lambda _, item: (
            item.write_direct(np.zeros(item.shape, item.dtype))
            if isinstance(item, h5py.Dataset) and item.shape
            else None
        )
    )


def _edit_config(edit):
    """The config attr's JSON changed as a text editor would, through HDF5."""

    def change(f: h5py.File) -> None:
        config = json.loads(f.attrs["config"])
        edit(config)
        f.attrs["config"] = json.dumps(config, sort_keys=True)

    return change


DAMAGE = {
    "a view's numbers, rewritten": _rewrite_embedding,
    "the recorded data folder": _edit_config(lambda c: c["run"].update(data_dir="elsewhere")),
    "the recorded command": _edit_config(lambda c: c.update(command="floodcache embed --x")),
    "the recorded audit's count": _edit_config(lambda c: c["audit"].update(pairs=290)),
    "the fingerprint": lambda f: f.attrs.__setitem__("fingerprint", "0" * 64),
    "an emptied config": lambda f: f.attrs.__setitem__("config", "{}"),
    "a config that is not JSON": lambda f: f.attrs.__setitem__("config", "{garbage"),
    "a config that is a list": lambda f: f.attrs.__setitem__("config", "[]"),
    "a bit of input_size": _flip_bit("input_size"),
    "a bit of original_size": _flip_bit("original_size"),
    "a bit of water_fraction": _flip_bit("water_fraction"),
    "a split": _set_column("split", "test"),
    "a view number": _set_column("view", 7),
    "an image preview": _set_column("image_jpeg", np.zeros(10, np.uint8)),
    "an image file name": _set_column("image_file", "elsewhere.jpg"),
    "the pretrained mask decoder, zeroed": _zero_mask_decoder,
    "the model type": lambda f: f.attrs.__setitem__("model_type", "vit_b"),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_every_byte_that_changes_a_result_is_checked_by_verify_and_train(
    cache_copy, tmp_path, damage
):
    with h5py.File(cache_copy, "r+") as f:
        damage(f)
    assert not verify(cache_copy).ok
    with pytest.raises(CacheError, match=r"is damaged: .* verify --cache .* --overwrite"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    assert not (tmp_path / "run").exists()


def _rewrite_view(field: str, split: str):
    """One view's `field` changed through HDF5 (its own checksum still holds): only the
    view's sha256 tells."""

    def rewrite(f: h5py.File) -> None:
        row = list(f["split"].asstr()[:]).index(split)
        if field == "mask_png":
            f[field][row] = np.append(f[field][row], np.uint8(0))
        else:
            f[field][row] = f[field][row] + 1

    return rewrite


@pytest.mark.parametrize("field", ["embeddings", "lowres_mask", "mask_png"])
@pytest.mark.parametrize("in_memory", [True, False], ids=["loaded", "batch by batch"])
def test_a_rewritten_view_is_refused_however_train_reads_it(
    cache_copy, tmp_path, monkeypatch, field, in_memory
):
    """Loaded into memory, each view is checked as it is read, and never read a second time
    to be checked; read batch by batch (too large for memory), all are checked first."""
    with h5py.File(cache_copy, "r+") as f:
        _rewrite_view(field, "train")(f)
    if in_memory:
        monkeypatch.setattr(verify_module, "_view_problems", _no_second_read)
    fraction = 0.5 if in_memory else 1e-12
    config = TrainConfig(
        cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False, memory_fraction=fraction
    )
    with pytest.raises(
        CacheError, match=r"is damaged: view \d+ \(image .* verify --cache .* --overwrite"
    ):
        run_train(config)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def _no_second_read(*args):
    raise AssertionError("the views were read once more, to be checked")


@pytest.mark.parametrize("field", ["embeddings", "lowres_mask", "mask_png"])
def test_evaluate_refuses_a_rewritten_view_as_it_reads_it(cache_copy, tmp_path, monkeypatch, field):
    with h5py.File(cache_copy, "r+") as f:
        _rewrite_view(field, "test")(f)
    monkeypatch.setattr(verify_module, "_view_problems", _no_second_read)
    config = EvaluateConfig(cache_copy, tmp_path / "evaluation", split="test", progress=False)
    with pytest.raises(CacheError, match=r"is damaged: view \d+ \(image "):
        run_evaluate(config)
    assert not (tmp_path / "evaluation").exists()


@pytest.mark.parametrize("damage", [_zero_mask_decoder, _set_column("original_size", [0, 0])])
def test_evaluate_refuses_a_damaged_cache(cache_copy, tmp_path, damage):
    """A zeroed pretrained decoder scored `pretrained` 0.0; an original_size of 0 divided."""
    with h5py.File(cache_copy, "r+") as f:
        damage(f)
    config = EvaluateConfig(cache_copy, tmp_path / "evaluation", split="test", progress=False)
    with pytest.raises(CacheError, match="is damaged"):
        run_evaluate(config)
    assert not (tmp_path / "evaluation").exists()


def test_a_cache_without_the_newer_checksums_is_refused_with_the_rebuild(cache_copy, tmp_path):
    with h5py.File(cache_copy, "r+") as f:
        del f.attrs[METADATA_SHA256], f.attrs[SAM_SHA256]
    assert "written by an older floodcache" in " ".join(verify(cache_copy).problems)
    with pytest.raises(CacheError, match="cannot be checked: .* embed --overwrite"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))


def _as_written_before_the_config_checksum(f: h5py.File) -> None:
    config = json.loads(f.attrs["config"])
    del config["audit"], f.attrs[CONFIG_SHA256]
    f.attrs["config"] = json.dumps(config, sort_keys=True)


def test_a_cache_written_before_the_config_checksum_is_still_verified(cache_copy, tmp_path):
    with h5py.File(cache_copy, "r+") as f:
        _as_written_before_the_config_checksum(f)
    assert verify(cache_copy).ok
    run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    with h5py.File(cache_copy, "r+") as f:  # its views are still checked
        _rewrite_embedding(f)
    assert not verify(cache_copy).ok


def test_an_audit_recorded_without_the_config_checksum_is_refused(cache_copy):
    with h5py.File(cache_copy, "r+") as f:
        del f.attrs[CONFIG_SHA256]
    assert verify(cache_copy).problems == [
        "its config records an audit but has no config_sha256 (edited)"
    ]


def test_a_cache_without_a_fingerprint_is_named_with_the_rebuild(cache_copy):
    with h5py.File(cache_copy, "r+") as f:
        del f.attrs["fingerprint"]
    with pytest.raises(CacheError, match="has no fingerprint.* embed --overwrite"):
        verify(cache_copy)


@pytest.mark.parametrize(
    ("attribute", "value", "says"),
    [
        ("complete", "no", "is not a complete floodcache cache"),
        ("complete", 0, "is not a complete floodcache cache"),
        ("schema_version", "abc", "has schema abc, this floodcache reads"),
    ],
)
def test_a_header_attribute_of_another_type_is_named_with_the_rebuild(
    cache_copy, attribute, value, says
):
    """complete="no" counted as complete; schema_version="abc" gave a bare ValueError."""
    with h5py.File(cache_copy, "r+") as f:
        f.attrs[attribute] = value
    with pytest.raises(CacheError, match=f"{cache_copy} {says}.* embed --overwrite"):
        Cache.open(cache_copy)
