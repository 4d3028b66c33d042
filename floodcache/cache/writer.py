"""Writing the HDF5 embedding cache (`format` has its layout): its parts, and its lock.

Crash safety: while `embed` runs, finished batches go to `<cache>.parts/part-*.h5`, each written
to a temporary name, fsynced and renamed, so a part is either whole or absent. The final file is
assembled from them into `<cache>.tmp` and renamed into place (`assembly`), so `<cache>` is
either absent or complete. Parts store the embeddings and targets in the final file's chunks,
which assembly copies as they are, rather than decoding and writing them again.
"""

from __future__ import annotations

import json
import shutil
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np

from floodcache.cache.format import BYTES, FIELDS, STR, CacheError, parts_folder, view_digest
from floodcache.cache.reader import Cache
from floodcache.cache.removal import (
    removals_pending,
    remove_in_background,
    set_aside_and_remove,
)
from floodcache.utils.atomic import replace_synced
from floodcache.utils.differences import differences
from floodcache.utils.identity import refuse_other
from floodcache.utils.lock import ProcessLock

CHUNKED = ("embeddings", "lowres_mask")  # one chunk per view, fletcher32-checked
PARTS_LOCK = "writer.lock"  # in the parts folder, held while a run writes there


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


class CacheWriter:
    """Writes one cache crash-safely; resumes from finished parts of an earlier run.

    `identity` holds everything that makes two caches different (checkpoint, model type, seed,
    augmentation, data...); `config` is the full JSON-able config recorded in the cache,
    including `identity` and the command that produced it. With `overwrite`, a cache built
    otherwise stays in place until the new one replaces it, whole.

    Two locks (`ProcessLock`) keep other embed runs out: `<cache>.lock` while this one decides
    what to do, and one in the parts folder while it writes there, so that removing the first
    by hand still lets no second run touch the parts.
    """

    def __init__(self, path: Path, identity: dict, config: dict, overwrite: bool = False):
        self.path = Path(path)
        self.parts = parts_folder(self.path)
        self.identity, self.config = identity, config
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._locks = [self._lock(self.path.with_name(self.path.name + ".lock"))]
        try:
            for folder in removals_pending(self.path):  # a machine stopped while removing them
                remove_in_background(folder)
            self.already_complete = self._check_existing(overwrite)
            if not self.already_complete:
                self._prepare_parts(overwrite)
            elif self._same_identity(self._parts_identity()):  # stopped before putting them away
                self._locks.append(self._lock(self.parts / PARTS_LOCK))
                set_aside_and_remove(self.parts)
        except BaseException:
            self.close()  # refused: the locks go too
            raise

    @classmethod
    def attach(cls, path: Path, identity: dict, already_complete: bool) -> CacheWriter:
        """A writer of parts for a run whose leader (torchrun rank 0) opened and locked it."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.parts = parts_folder(writer.path)
        writer.identity, writer.config = identity, {}  # the leader writes the config
        writer._locks = []
        writer.already_complete = already_complete
        return writer

    def _lock(self, path: Path) -> ProcessLock:
        return ProcessLock(
            path, f"another embed is writing {self.path}", "or choose another --cache", CacheError
        )

    def _check_existing(self, overwrite: bool) -> bool:
        """Whether the cache is there and complete already, as asked. A file there that is not
        a cache is refused, --overwrite or not (`Cache.open` says so)."""
        if not self.path.exists() or (overwrite and _replaceable(self.path)):
            return False
        with Cache.open(self.path) as cache:
            old = cache.config.get("identity", {})
        refuse_other(
            old,
            self.identity,
            f"{self.path} already exists and was built differently",
            "choose a new --cache FILE, or pass --overwrite to replace it",
            CacheError,
            ("cache has", "asked"),
        )
        return True

    def _parts_identity(self) -> dict | None:
        """The identity of the run whose parts are in the parts folder; None if unreadable."""
        try:
            return json.loads((self.parts / "config.json").read_text())["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _same_identity(self, old: dict | None) -> bool:
        return old is not None and not differences(old, self.identity)

    def _prepare_parts(self, overwrite: bool) -> None:
        """Go on from the parts of a run with this identity, whatever `overwrite` says (they
        are this very run's work); parts of another are replaced only with `overwrite`."""
        if self.parts.exists():
            self._locks.append(self._lock(self.parts / PARTS_LOCK))
            old = self._parts_identity()
            if self._same_identity(old):
                return
            if old is not None and not overwrite:
                refuse_other(
                    old,
                    self.identity,
                    f"an unfinished embed run for {self.path} ({self.parts}) used other settings",
                    "rerun it with its own settings to finish it, choose a new --cache FILE, "
                    "or pass --overwrite to start over",
                    CacheError,
                    ("parts have", "asked"),
                )
            self._locks.pop().release()
            shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        self._locks.append(self._lock(self.parts / PARTS_LOCK))
        tmp = self.parts / "config.json.tmp"
        tmp.write_text(json.dumps(self.config, sort_keys=True, indent=1))
        replace_synced(tmp, self.parts / "config.json")

    def part_files(self) -> list[Path]:
        return part_files(self.parts)

    def done(self) -> set[tuple[str, int]]:
        """(image_id, view) of every view already in a finished part."""
        keys: set[tuple[str, int]] = set()
        for part in self.part_files():
            with h5py.File(part, "r") as f:
                ids = f["image_id"].asstr()[:]
                keys.update(zip(ids, f["view"][:].tolist(), strict=True))
        return keys

    def write_part(self, records: list[dict], name: str) -> Path:
        """Write finished views as one part, atomically (`write_part`)."""
        return write_part(self.parts, records, name)

    def close(self) -> None:
        """Release the locks (and remove their files) so another embed may start."""
        while self._locks:
            self._locks.pop().release()

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _replaceable(path: Path) -> bool:
    """Whether --overwrite may replace the file at `path`: a floodcache cache, or an HDF5 file
    too damaged to open (a truncated cache); never a file of another kind."""
    if not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as file:
            return "schema_version" in file.attrs
    except OSError:
        return True


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
