"""A complete cache opened for reading."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from floodcache.cache.format import (
    SCHEMA_VERSION,
    CacheError,
    column,
    finite,
    parts_folder,
    view_problems,
)
from floodcache.cache.loading import RowLoader, read_rows
from floodcache.settings import SPLITS
from floodcache.utils.program import command, option

# What every cache that `embed` completed carries, older ones included (`Cache.open`)
REQUIRED_ATTRS = ("schema_version", "config", "fingerprint", "model_type", "checkpoint_sha256")


@dataclass
class Cache:
    """A complete cache opened for reading (the HDF5 file stays open while this lives)."""

    path: Path
    file: h5py.File

    @classmethod
    def open(cls, path: Path) -> Cache:
        """Open a complete cache; CacheError naming the fix for a missing or unfinished one."""
        path = Path(path)
        if not path.exists():
            parts = parts_folder(path)
            if (parts / "config.json").exists():
                again = json.loads((parts / "config.json").read_text()).get("command", "")
                raise CacheError(
                    f"{path} is not finished: an embed run stopped part way ({parts}). "
                    f"Run the same command again to complete it:\n  {again}"
                )
            raise CacheError(f"{path} does not exist: build it with {command('embed')}")
        if not h5py.is_hdf5(path):
            raise CacheError(
                f"{path} is not an HDF5 file, so not a cache (is --cache right?); `embed` never "
                "replaces it, even with --overwrite: give the cache another name"
            )
        try:
            file = h5py.File(path, "r")
        except OSError as err:
            raise CacheError(
                f"{path} is not a readable HDF5 file ({err}); it is damaged or truncated: "
                f"rebuild it with {command('embed', option('overwrite'), '...')}"
            ) from err
        cache = cls(path, file)
        cache._check_header()
        return cache

    def _check_header(self) -> None:
        attrs = self.file.attrs
        if "schema_version" not in attrs:
            raise CacheError(
                f"{self.path} is an HDF5 file but not a floodcache cache (is --cache right?); "
                "`embed` never replaces it, even with --overwrite: give the cache another name"
            )
        lacks = [name for name in REQUIRED_ATTRS if name not in attrs]
        # exactly the boolean true `embed` writes: a string such as "no" is truthy
        if (
            not isinstance(attrs.get("complete"), (bool, np.bool_))
            or not attrs["complete"]
            or lacks
        ):
            lacking = f" (it has no {', '.join(lacks)})" if lacks else ""
            raise CacheError(
                f"{self.path} is not a complete floodcache cache{lacking}: rebuild it with "
                f"{command('embed', option('overwrite'), '...')}"
            )
        if _integer(attrs["schema_version"]) != SCHEMA_VERSION:
            raise CacheError(
                f"{self.path} has schema {attrs['schema_version']}, this floodcache reads "
                f"{SCHEMA_VERSION}: rebuild it with {command('embed', option('overwrite'), '...')}"
            )

    @property
    def config(self) -> dict:
        """What made the cache (JSON): its identity, the settings, the command."""
        try:
            config = json.loads(self.file.attrs["config"])
        except ValueError as err:
            raise self._damaged("config", str(err)) from err
        if not isinstance(config, dict):
            raise self._damaged("config", f"a JSON {type(config).__name__}, not an object")
        return config

    @property
    def model_type(self) -> str:
        return str(self.file.attrs["model_type"])

    @property
    def fingerprint(self) -> str:
        return str(self.file.attrs["fingerprint"])

    def __len__(self) -> int:
        return int(self.file["view"].shape[0])

    def column(self, name: str) -> np.ndarray:
        """A whole per-view column (not `embeddings`): strings decoded to str."""
        return column(self.file, name)

    def rows(self, split: str | None = None, view0_only: bool = False) -> np.ndarray:
        """Row indices of a split (all splits when None), optionally only un-augmented views."""
        keep = np.ones(len(self), bool)
        if split is not None:
            keep &= self.column("split") == split
        if view0_only:
            keep &= self.column("view") == 0
        return np.flatnonzero(keep)

    def embeddings(self, rows: np.ndarray) -> np.ndarray:
        """len(rows) x 256 x 64 x 64 float16 (rows sorted ascending is fastest).

        Raises CacheError when HDF5's checksum finds a damaged chunk, or values are not finite:
        nothing gets trained or evaluated on garbage.
        """
        values = self.read("embeddings", rows)
        self.check_finite(values)
        return values

    def read(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a per-view dataset in the order asked, read ascending in large sequential
        reads (`loading.read_rows`); CacheError naming the fix when the file is damaged."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        data = self.file[name]
        try:
            if data.dtype.kind == "O":  # variable-length rows: small, read as they are
                values = data[rows[order]]
            else:
                values = read_rows(data, rows[order])
        except OSError as err:  # fletcher32 mismatch or a broken HDF5 structure
            raise self._damaged(name, str(err)) from err
        if np.array_equal(order, np.arange(len(rows))):
            return values
        unsorted = np.empty_like(values)
        unsorted[order] = values
        return unsorted

    def check_finite(self, embeddings: np.ndarray) -> None:
        """CacheError unless every value of `embeddings` (read from this cache) is finite."""
        if not finite(embeddings):
            raise self._damaged("embeddings", "NaN or infinite values")

    def load_embeddings(self, rows: np.ndarray, targets: np.ndarray | None = None) -> RowLoader:
        """The embeddings of `rows` (ascending) read in the background (`RowLoader`), each
        read checked as it comes: finite, and each view's numbers (embedding, low-res target,
        full mask) against its sha256, so that nothing is learnt or scored from a damaged
        view and nothing is read twice to check it. `targets`: the rows' `lowres_mask`, where
        the caller has read them already."""
        check = self._view_check(rows, targets)
        return RowLoader(self.file["embeddings"], rows, check, self._damaged)

    def _view_check(self, rows: np.ndarray, targets) -> Callable[[np.ndarray, int], None]:
        """`RowLoader`'s check of the embeddings of `rows` (see `load_embeddings`)."""
        rows = np.asarray(rows, np.int64)
        stored = self.column("view_sha256")[rows]
        targets = self.read("lowres_mask", rows) if targets is None else targets
        masks = self.read("mask_png", rows)

        def check(embeddings: np.ndarray, start: int) -> None:
            for i, embedding in enumerate(embeddings, start):
                record = {"embeddings": embedding, "lowres_mask": targets[i], "mask_png": masks[i]}
                problems = view_problems(record, stored[i])
                if problems:
                    raise self.damaged_view(rows[i], "; ".join(problems))

        return check

    def damaged_view(self, row: int, detail: str) -> CacheError:
        """The error of a view found damaged as it is read, naming it and the fix."""
        image, view = self.column("image_id")[row], self.column("view")[row]
        return CacheError(
            f"{self.path} is damaged: view {row} (image {image}, view {view}): {detail}. "
            f"{command('verify', option('cache'), self.path)} lists every problem; rebuild it "
            f"with {command('embed', option('overwrite'), '...')}"
        )

    def _damaged(self, name: str, detail: str) -> CacheError:
        return CacheError(
            f"{self.path} is damaged ({name}: {detail}); "
            f"{command('verify', option('cache'), self.path)} names the views, and "
            f"{command('embed', '...', option('overwrite'))} rebuilds it"
        )

    def full_mask(self, row: int) -> np.ndarray:
        """HxW uint8 {0,1}: the view's full-resolution mask."""
        import cv2

        mask = cv2.imdecode(self.file["mask_png"][row], cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(f"{self.path}: the mask of view row {row} is not a PNG (damaged)")
        return mask

    def image_preview(self, row: int) -> np.ndarray:
        """hxwx3 uint8 RGB: the view's image, longest side <= 512."""
        import cv2

        bgr = cv2.imdecode(self.file["image_jpeg"][row], cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{self.path}: the preview of view row {row} is not a JPEG (damaged)")
        return bgr[..., ::-1].copy()

    def sam_state(self, module: str) -> dict[str, np.ndarray]:
        """The pretrained state dict of `prompt_encoder` or `mask_decoder`."""
        group = self.file["sam"][module]
        state: dict[str, np.ndarray] = {}
        group.visititems(
            lambda name, item: (
                state.__setitem__(name.replace("/", "."), item[()])
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
        return state

    def counts(self) -> dict[str, tuple[int, int]]:
        """split -> (images, views)."""
        split, image_id = self.column("split"), self.column("image_id")
        return {s: (len(set(image_id[split == s])), int((split == s).sum())) for s in SPLITS}

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _integer(value) -> int | None:
    """A schema version as an int, or None where it is not one ("abc"): refused as another
    schema, naming the file, rather than a bare ValueError."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
