"""The final cache, assembled from the parts `writer` writes: `<cache>.tmp`, filled as
the parts come, completed, synced and renamed into place, so `<cache>` is either absent or
complete; then the parts are set aside and removed in the background
(`removal.set_aside_and_remove`).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np

from floodcache.cache.format import (
    CONFIG_SHA256,
    FIELDS,
    METADATA_FIELDS,
    METADATA_SHA256,
    SAM_SHA256,
    SCHEMA_VERSION,
    CacheError,
    column,
    config_digest,
    fingerprint,
    metadata_digest,
    parts_folder,
    sam_digest,
)
from floodcache.cache.removal import set_aside_and_remove
from floodcache.cache.writer import CacheWriter, create_fields, remove_quietly
from floodcache.data.views import ViewKey
from floodcache.utils.atomic import replace_synced


def assemble(writer: CacheWriter, plan: list[ViewKey], sam_state: dict[str, np.ndarray]) -> None:
    """Assemble all of `writer`'s parts in plan order into the final cache, in this process;
    then the parts go (`Assembly.finish`)."""
    Assembly(writer.path, plan).finish(
        writer.part_files(), writer.identity, writer.config, sam_state
    )


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


_DATASYNC: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class _StepClock:
    """Seconds per named step, each from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.last = now - self.last, now


class Assembly:
    """The final cache being filled from parts, in any order, as `<cache>.tmp`.

    `embed` adds each part as soon as it is written, so that when the last one is, little is
    left to do; `finish` adds the parts not added yet, writes the rest of the cache and
    renames it into place, then sets the parts aside to be removed in the background. Until
    then the parts are the record of the run: the .tmp file is rebuilt from them if the run
    stops.
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
        self._guarded(lambda: create_fields(self.file, len(plan)))

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
        # On disk now, in the background, rather than all at the end, where syncing ~2 MiB a
        # view would be what the run waits for after its last batch. On a thread of its own,
        # one at a time, so that the next part is copied meanwhile.
        self.file.flush()
        self._await_sync()
        if self.fd is not None:
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
        if self.failed is not None:
            raise self.failed
        self._guarded(self._await_sync)
        clock.step("the last part's flush to disk")
        if not self.filled.all():
            self.abandon()
            missing = int((~self.filled).sum())
            raise CacheError(f"{missing} planned views are missing from {self.parts}")
        self._guarded(lambda: self._complete(identity, config, sam_state))
        clock.step("completing the cache")
        self._guarded(lambda: replace_synced(self.tmp, self.path))
        clock.step("syncing it and renaming it into place")
        set_aside_and_remove(self.parts)
        clock.step("setting the parts aside, removed in the background")
        return clock.seconds

    def _complete(self, identity: dict, config: dict, sam_state: dict[str, np.ndarray]) -> None:
        out = self.file
        sam = out.create_group("sam")
        for name, array in sam_state.items():
            sam.create_dataset(name, data=array)
        digests = out["view_sha256"].asstr()[:].tolist()
        out.attrs[METADATA_SHA256] = metadata_digest(
            {name: column(out, name) for name in METADATA_FIELDS}
        )
        out.attrs[SAM_SHA256] = sam_digest(sam)
        out.attrs["schema_version"] = SCHEMA_VERSION
        out.attrs["model_type"] = identity["model_type"]
        out.attrs["checkpoint_sha256"] = identity["checkpoint_sha256"]
        out.attrs["config"] = json.dumps(config, sort_keys=True)
        out.attrs[CONFIG_SHA256] = config_digest(out.attrs["config"])
        out.attrs["fingerprint"] = fingerprint(identity, digests)
        out.attrs["complete"] = True
        out.close()
        self._close_fd()

    def abandon(self) -> None:
        """Close and remove the unfinished .tmp file; the parts stay."""
        with suppress(Exception):
            self.file.close()
        self._close_fd()
        remove_quietly(self.tmp)

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
