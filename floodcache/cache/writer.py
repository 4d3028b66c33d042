"""Writing the HDF5 embedding cache (`format` has its layout): its parts, and its lock.

Crash safety: while `embed` runs, finished batches go to `<cache>.parts/part-*.h5`, each written
to a temporary name, fsynced and renamed, so a part is either whole or absent. The final file is
assembled from them into `<cache>.tmp` and renamed into place (`assembly`), so `<cache>` is
either absent or complete. Parts store the embeddings and targets in the final file's chunks,
which assembly copies as they are, rather than decoding and writing them again.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np

from floodcache.cache.format import BYTES, FIELDS, STR, CacheError, parts_folder, view_digest
from floodcache.cache.removal import (
    removals_pending,
    remove_in_background,
    set_aside_and_remove,
)
from floodcache.utils.atomic import replace_synced
from floodcache.utils.differences import refuse_if_different

CHUNKED = ("embeddings", "lowres_mask")  # one chunk per view, fletcher32-checked


def create_fields(group: h5py.Group, views: int) -> None:
    """Empty FIELDS datasets of `views` rows: one layout for parts and final cache, so that
    assembling copies the chunked fields' chunks as they are (`assembly`)."""
    for name, (shape, dtype) in FIELDS.items():
        chunked = name in CHUNKED
        group.create_dataset(
            name,
            shape=(views, *shape),
            dtype=dtype,
            chunks=(1, *shape) if chunked else None,
            fletcher32=chunked,
        )


def _write_rows(group: h5py.Group, records: list[dict]) -> None:
    """Write records (dicts holding every FIELDS key) as datasets of `group`."""
    create_fields(group, len(records))
    for name, (shape, dtype) in FIELDS.items():
        dataset = group[name]
        if name in CHUNKED:  # a chunk per row; not first stacked into one more copy
            for row, record in enumerate(records):
                dataset[row] = np.asarray(record[name], dtype)
        elif dtype in (STR, BYTES):
            data = np.empty(len(records), dtype=object)
            data[:] = [
                np.asarray(r[name], np.uint8) if dtype is BYTES else r[name] for r in records
            ]
            dataset.write_direct(data)  # h5py's `[:] =` reads equal-length rows as a 2-D array
        else:
            dataset[:] = np.stack([np.asarray(r[name], dtype) for r in records]).reshape(-1, *shape)


def remove_quietly(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


_locked_here: set[Path] = set()  # caches this process holds the lock of


class CacheWriter:
    """Writes one cache crash-safely; resumes from finished parts of an earlier run.

    `identity` holds everything that makes two caches different (checkpoint, model type, seed,
    augmentation, data...); `config` is the full JSON-able config recorded in the cache,
    including `identity` and the command that produced it.
    """

    def __init__(self, path: Path, identity: dict, config: dict, overwrite: bool = False):
        self.path = Path(path)
        self.parts = parts_folder(self.path)
        self.identity, self.config = identity, config
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        for folder in removals_pending(self.path):  # a machine stopped while they were removed
            remove_in_background(folder)
        try:
            self.already_complete = self._check_existing(overwrite)
            if not self.already_complete:
                self._prepare_parts(overwrite)
            elif self.parts.exists():  # stopped between putting the cache and them away
                set_aside_and_remove(self.parts)
        except BaseException:
            self.close()  # refused: the lock goes too
            raise

    @classmethod
    def attach(cls, path: Path, identity: dict, already_complete: bool) -> CacheWriter:
        """A writer of parts for a run whose leader (torchrun rank 0) opened and locked it."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.parts = parts_folder(writer.path)
        writer.identity, writer.config = identity, None
        writer._lock = None
        writer.already_complete = already_complete
        return writer

    def _acquire_lock(self):
        """Lock `<cache>.lock` for this process. A POSIX record lock, not flock: the processes
        forked from this one (readers, writers) do not hold it, so it goes with this process
        however it ends. Such locks do not exclude within one process: `_locked_here` does."""
        key = self.path.resolve()
        lock_path = self.path.with_name(self.path.name + ".lock")
        busy = CacheError(
            f"another process is writing {self.path} (lock {lock_path} is held); wait for it "
            "to finish, or choose another --cache"
        )
        if key in _locked_here:
            raise busy  # before opening the file: closing any copy would drop the lock
        lock = open(lock_path, "w")  # noqa: SIM115
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES, as the system says
            lock.close()
            raise busy from None
        _locked_here.add(key)
        return lock

    def _check_existing(self, overwrite: bool) -> bool:
        if not self.path.exists():
            return False
        if overwrite:
            self.path.unlink()
            return False
        with h5py.File(self.path, "r") as f:
            old = json.loads(f.attrs["config"])["identity"]
        refuse_if_different(
            old,
            self.identity,
            f"{self.path} already exists and was built differently",
            "choose a new --cache FILE, or pass --overwrite to replace it",
            CacheError,
            ("cache has", "asked"),
        )
        return True

    def _prepare_parts(self, overwrite: bool) -> None:
        config_file = self.parts / "config.json"
        if self.parts.exists() and config_file.exists() and not overwrite:
            old = json.loads(config_file.read_text())["identity"]
            refuse_if_different(
                old,
                self.identity,
                f"an unfinished embed run for {self.path} ({self.parts}) used other settings",
                "rerun it with its own settings to finish it, choose a new --cache FILE, or "
                "pass --overwrite to start over",
                CacheError,
                ("parts have", "asked"),
            )
            return
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        tmp = self.parts / "config.json.tmp"
        tmp.write_text(json.dumps(self.config, sort_keys=True, indent=1))
        replace_synced(tmp, config_file)

    def part_files(self) -> list[Path]:
        return part_files(self.parts)

    def done(self) -> set[tuple[str, int]]:
        """(image_id, view) of every view already in a finished part."""
        keys = set()
        for part in self.part_files():
            with h5py.File(part, "r") as f:
                ids = f["image_id"].asstr()[:]
                keys.update(zip(ids, f["view"][:].tolist(), strict=True))
        return keys

    def write_part(self, records: list[dict], name: str) -> Path:
        """Write finished views as one part, atomically (`write_part`)."""
        return write_part(self.parts, records, name)

    def close(self) -> None:
        """Release the lock (and remove the lock file) so another embed may start."""
        if self._lock is None:
            return
        lock_path = Path(self._lock.name)
        remove_quietly(lock_path)
        self._lock.close()
        self._lock = None
        _locked_here.discard(self.path.resolve())

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def part_files(parts: Path) -> list[Path]:
    """The finished parts in the folder `parts`, by name (part-<name>.h5, `write_part`)."""
    return sorted(parts.glob("part-*.h5"))


def write_part(parts: Path, records: list[dict], name: str) -> Path:
    """Write finished views (dicts of every FIELDS key but view_sha256, which is added) as
    `parts`/part-`name`.h5, atomically: the part is whole or absent. `name` is unique per
    batch and rank. Returns the part's path."""
    for record in records:
        record["view_sha256"] = view_digest(record)
    final = parts / f"part-{name}.h5"
    tmp = final.with_suffix(".tmp")
    try:
        with h5py.File(tmp, "w") as f:
            _write_rows(f, records)
        replace_synced(tmp, final)
    except OSError as err:
        remove_quietly(tmp)
        finished = len(part_files(parts))
        raise CacheError(
            f"could not write {final} ({err}); the {finished} finished parts are kept: free "
            "some space and rerun the same command to resume"
        ) from err
    return final
