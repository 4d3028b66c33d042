"""Writing the HDF5 embedding cache (`cache` has its layout): parts, then one file.

Crash safety: while `embed` runs, finished batches go to `<cache>.parts/part-*.h5`, each written
to a temporary name, fsynced and renamed, so a part is either whole or absent. The final file is
assembled into `<cache>.tmp` and renamed into place, so `<cache>` is either absent or complete.
Parts store the embeddings and targets in the final file's chunks, which assembly copies as
they are: on this development machine's RAM disk, 9.4 against 2.0 ms a view for decoding and
writing them again.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np

from floodcache.cache import (
    BYTES,
    FIELDS,
    SCHEMA_VERSION,
    STR,
    CacheError,
    config_difference,
    fingerprint,
    parts_folder,
    view_digest,
)
from floodcache.views import ViewKey

CHUNKED = ("embeddings", "lowres_mask")  # one chunk per view, fletcher32-checked


def _create_fields(group: h5py.Group, views: int) -> None:
    """Empty FIELDS datasets of `views` rows: one layout for parts and final cache, so that
    assembling copies the chunked fields' chunks as they are (`_copy_rows`)."""
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
    _create_fields(group, len(records))
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


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, rows: np.ndarray) -> None:
    """Row i of `source` (a part's dataset) to row rows[i] of `target` (the final cache's).

    Where both have the same chunks and filters, each row's chunk is copied as stored, its
    checksum included: about a third of the time of decoding and writing it again. Other
    datasets (and parts written by older versions) are decoded and written one slice per
    run of consecutive rows.
    """
    if _same_storage(source, target):
        origin = (0,) * (source.ndim - 1)
        for i, row in enumerate(rows.tolist()):
            filters, chunk = source.id.read_direct_chunk((i, *origin))
            target.id.write_direct_chunk((row, *origin), chunk, filters)
        return
    data = source[:]
    starts = [0, *(np.flatnonzero(np.diff(rows) != 1) + 1).tolist(), len(rows)]
    for start, stop in itertools.pairwise(starts):
        first = int(rows[start])
        target.write_direct(data, np.s_[start:stop], np.s_[first : first + stop - start])


def _same_storage(source: h5py.Dataset, target: h5py.Dataset) -> bool:
    """Whether the datasets store rows as identical one-row chunks (dtype, shape, filters)."""
    return (
        source.chunks is not None
        and source.chunks == target.chunks
        and source.chunks[0] == 1
        and source.dtype == target.dtype
        and source.shape[1:] == target.shape[1:]
        and source.id.get_create_plist().get_nfilters()
        == target.id.get_create_plist().get_nfilters()
        and (source.fletcher32, source.compression, source.shuffle)
        == (target.fletcher32, target.compression, target.shuffle)
    )


_DATASYNC = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _fsync_replace(tmp: Path, final: Path) -> None:
    """fsync `tmp`, then atomically rename it to `final` and fsync the folder."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _StepClock:
    """Seconds per named step, each from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.last = now - self.last, now


def _remove_quietly(path: Path) -> None:
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
        try:
            self.already_complete = self._check_existing(overwrite)
            if not self.already_complete:
                self._prepare_parts(overwrite)
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
        diff = config_difference(old, self.identity)
        if diff:
            raise CacheError(
                f"{self.path} already exists and was built differently:\n  "
                + "\n  ".join(diff)
                + "\nchoose a new --cache FILE, or pass --overwrite to replace it"
            )
        return True

    def _prepare_parts(self, overwrite: bool) -> None:
        config_file = self.parts / "config.json"
        if self.parts.exists() and config_file.exists() and not overwrite:
            old = json.loads(config_file.read_text())["identity"]
            diff = config_difference(old, self.identity)
            if diff:
                raise CacheError(
                    f"an unfinished embed run for {self.path} ({self.parts}) used other "
                    "settings:\n  " + "\n  ".join(diff) + "\nrerun it with its own settings to "
                    "finish it, choose a new --cache FILE, or pass --overwrite to start over"
                )
            return
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        tmp = self.parts / "config.json.tmp"
        tmp.write_text(json.dumps(self.config, sort_keys=True, indent=1))
        _fsync_replace(tmp, config_file)

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

    def finalize(self, plan: list[ViewKey], sam_state: dict[str, np.ndarray]) -> None:
        """Assemble all parts in plan order into the final cache, then remove the parts."""
        assembly = Assembly(self.path, plan)
        assembly.finish(self.part_files(), self.identity, self.config, sam_state)

    def close(self) -> None:
        """Release the lock (and remove the lock file) so another embed may start."""
        if self._lock is None:
            return
        lock_path = Path(self._lock.name)
        _remove_quietly(lock_path)
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
        _fsync_replace(tmp, final)
    except OSError as err:
        _remove_quietly(tmp)
        finished = len(part_files(parts))
        raise CacheError(
            f"could not write {final} ({err}); the {finished} finished parts are kept: free "
            "some space and rerun the same command to resume"
        ) from err
    return final


class Assembly:
    """The final cache being filled from parts, in any order, as `<cache>.tmp`.

    `embed` adds each part as soon as it is written, so that when the last one is, little is
    left to do; `finish` adds the parts not added yet, writes the rest of the cache and
    renames it into place, then removes the parts. Until then the parts are the record of
    the run: the .tmp file is rebuilt from them if the run stops.
    """

    def __init__(self, path: Path, plan: list[ViewKey]):
        self.path = Path(path)
        self.parts = parts_folder(self.path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.row_of = {(key.image_id, key.view): row for row, key in enumerate(plan)}
        self.filled = np.zeros(len(plan), bool)
        self.added: set[str] = set()
        self.failed: CacheError | None = None  # raised again by `finish`
        self.fd: int | None = None  # the .tmp file, to flush what is written as it comes
        self.syncer = ThreadPoolExecutor(1)  # ... on its own thread (`_add`)
        self.syncing: Future | None = None  # that flush in flight
        self.file = self._guarded(lambda: h5py.File(self.tmp, "w"))
        self.fd = self._guarded(lambda: os.open(self.tmp, os.O_RDONLY))
        self._guarded(lambda: _create_fields(self.file, len(plan)))

    def add(self, part: Path) -> None:
        """Copy a part's rows into their planned rows (once; adding it again does nothing)."""
        if part.name not in self.added and self.failed is None:
            self._guarded(lambda: self._add(part))
            self.added.add(part.name)

    def _add(self, part: Path) -> None:
        with h5py.File(part, "r") as f:
            keys = zip(f["image_id"].asstr()[:], f["view"][:].tolist(), strict=True)
            rows = np.array([self.row_of[key] for key in keys])
            for name in FIELDS:
                _copy_rows(f[name], self.file[name], rows)
        self.filled[rows] = True
        # On disk now, in the background, rather than all at the end: the final fsync of
        # ~2 MiB a view took ~1.2 s after the last batch of 640 views on the GPU machine.
        # On a thread of its own, one at a time, so that the next part is copied meanwhile.
        self.file.flush()
        self._await_sync()
        self.syncing = self.syncer.submit(_DATASYNC, self.fd)

    def _await_sync(self) -> None:
        """Wait for the flush to disk in flight, if any; raises its OSError."""
        syncing, self.syncing = self.syncing, None
        if syncing is not None:
            syncing.result()

    def finish(
        self, parts: list[Path], identity: dict, config: dict, sam_state: dict[str, np.ndarray]
    ) -> dict[str, float]:
        """Add `parts` (all of the run's), complete the cache and put it in place. Returns
        the seconds each step took, for embed's log."""
        clock = _StepClock()
        for part in parts:
            self.add(part)
        clock.step("adding parts not added yet")
        if self.failed is None:
            self._guarded(self._await_sync)
        clock.step("the last part's flush to disk")
        if self.failed is not None:
            raise self.failed
        if not self.filled.all():
            self.abandon()
            missing = int((~self.filled).sum())
            raise CacheError(f"{missing} planned views are missing from {self.parts}")
        self._guarded(lambda: self._complete(identity, config, sam_state))
        clock.step("completing the cache")
        self._guarded(lambda: _fsync_replace(self.tmp, self.path))
        clock.step("syncing it and renaming it into place")
        shutil.rmtree(self.parts)
        clock.step("removing the parts")
        return clock.seconds

    def _complete(self, identity: dict, config: dict, sam_state: dict[str, np.ndarray]) -> None:
        out = self.file
        for name, array in sam_state.items():
            out.create_dataset(f"sam/{name}", data=array)
        digests = out["view_sha256"].asstr()[:].tolist()
        out.attrs["schema_version"] = SCHEMA_VERSION
        out.attrs["model_type"] = identity["model_type"]
        out.attrs["checkpoint_sha256"] = identity["checkpoint_sha256"]
        out.attrs["config"] = json.dumps(config, sort_keys=True)
        out.attrs["fingerprint"] = fingerprint(identity, digests)
        out.attrs["complete"] = True
        out.close()
        self._close_fd()

    def abandon(self) -> None:
        """Close and remove the unfinished .tmp file; the parts stay."""
        with suppress(Exception):
            self.file.close()
        self._close_fd()
        _remove_quietly(self.tmp)

    def _close_fd(self) -> None:
        if self.fd is not None:
            with suppress(OSError):  # only after a failure, whose error is raised already
                self._await_sync()
            os.close(self.fd)
            self.fd = None
        self.syncer.shutdown()

    def _guarded(self, step):
        """Run one step; an OSError (full disk...) removes the .tmp and becomes a CacheError,
        raised now and again by `finish`."""
        try:
            return step()
        except OSError as err:
            self.abandon()
            self.failed = CacheError(
                f"could not write {self.path} ({err}); the finished parts in {self.parts} are "
                "kept: free some space and rerun the same command to finish"
            )
            raise self.failed from err
