"""The HDF5 embedding cache: its layout, reading, verifying (`cache_writer` writes it).

Layout of a complete cache (N views, one row each, in plan order):

    embeddings      N x 256 x 64 x 64 float16, one chunk per view, fletcher32 checksums
    lowres_mask     N x 256 x 256 uint8 {0,1}, training target in the decoder's padded frame
    mask_png        N vlen uint8, the view's full-resolution binary mask as PNG (for metrics)
    image_jpeg      N vlen uint8, the view's image as JPEG, longest side <= 512 (for galleries)
    image_id, split, image_file, mask_file   N str
    view            N int32 (0 = un-augmented)
    original_size   N x 2 int32 (H, W) of the view;  input_size  N x 2 int32 (h, w) after resize
    water_fraction  N float32
    view_sha256     N str, sha256 of the view's embedding, lowres_mask and mask_png bytes
    sam/prompt_encoder/*, sam/mask_decoder/*   the pretrained weights of SAM's prompt side
    attrs: schema_version, model_type, checkpoint_sha256, config (JSON), fingerprint, complete

Written crash-safely by `cache_writer`: whole or absent, never half written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

SPLITS = ("train", "val", "test")  # the values of the split field

SCHEMA_VERSION = 1
EMBEDDING_SHAPE = (256, 64, 64)  # one view's image embedding
STR = h5py.string_dtype()
BYTES = h5py.vlen_dtype(np.uint8)

# Per-view fields: name -> (shape of one row, dtype). One table drives parts and final file.
FIELDS: dict[str, tuple[tuple[int, ...], object]] = {
    "embeddings": (EMBEDDING_SHAPE, np.float16),
    "lowres_mask": ((256, 256), np.uint8),
    "mask_png": ((), BYTES),
    "image_jpeg": ((), BYTES),
    "image_id": ((), STR),
    "split": ((), STR),
    "image_file": ((), STR),
    "mask_file": ((), STR),
    "view": ((), np.int32),
    "original_size": ((2,), np.int32),
    "input_size": ((2,), np.int32),
    "water_fraction": ((), np.float32),
    "view_sha256": ((), STR),
}


class CacheError(RuntimeError):
    """A cache that cannot be used as asked; the message says what to run instead."""


def parts_folder(cache: Path) -> Path:
    """Where an unfinished embed run keeps the parts of `cache`: `<cache>.parts`."""
    return cache.with_name(cache.name + ".parts")


def view_digest(record: dict) -> str:
    """sha256 of what a view's numbers are: embedding, low-res target and full mask bytes."""
    digest = hashlib.sha256()
    # hashlib reads a C-contiguous array's buffer in place: the same bytes as .tobytes(),
    # without a 2 MiB copy per view (ascontiguousarray copies only what is not already so).
    digest.update(np.ascontiguousarray(record["embeddings"], np.float16))
    digest.update(np.ascontiguousarray(record["lowres_mask"], np.uint8))
    digest.update(np.ascontiguousarray(record["mask_png"], np.uint8))
    return digest.hexdigest()


def sam_prompt_state(sam) -> dict[str, np.ndarray]:
    """Pretrained prompt encoder and mask decoder weights, keyed `module/param/path` as the
    cache stores them under sam/ (`Cache.sam_state` reads them back)."""
    return {
        f"{module}/{name.replace('.', '/')}": tensor.detach().cpu().numpy()
        for module in ("prompt_encoder", "mask_decoder")
        for name, tensor in getattr(sam, module).state_dict().items()
    }


def fingerprint(identity: dict, digests: list[str]) -> str:
    """sha256 of what produced the cache (identity config) and of every view's digest, in order."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for view_sha in digests:
        digest.update(view_sha.encode())
    return digest.hexdigest()


def config_difference(
    old: dict, new: dict, old_name: str = "cache has", new_name: str = "asked"
) -> list[str]:
    """Human-readable lines naming each identity key whose value differs."""
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old_name} {old.get(k)!r}, {new_name} {new.get(k)!r}"
        for k in keys
        if old.get(k) != new.get(k)
    ]


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
                command = json.loads((parts / "config.json").read_text()).get("command", "")
                raise CacheError(
                    f"{path} is not finished: an embed run stopped part way ({parts}). "
                    f"Run the same command again to complete it:\n  {command}"
                )
            raise CacheError(f"{path} does not exist: build it with `python cli.py embed`")
        try:
            file = h5py.File(path, "r")
        except OSError as err:
            raise CacheError(
                f"{path} is not a readable HDF5 file ({err}); it is damaged or truncated: "
                "rebuild it with `python cli.py embed --overwrite ...`"
            ) from err
        cache = cls(path, file)
        cache._check_header()
        return cache

    def _check_header(self) -> None:
        attrs = self.file.attrs
        if not attrs.get("complete", False) or "config" not in attrs:
            raise CacheError(f"{self.path} is not a complete floodcache cache; rebuild it")
        if int(attrs["schema_version"]) != SCHEMA_VERSION:
            raise CacheError(
                f"{self.path} has schema {attrs['schema_version']}, this floodcache reads "
                f"{SCHEMA_VERSION}: rebuild it with `python cli.py embed --overwrite ...`"
            )

    @property
    def config(self) -> dict:
        return json.loads(self.file.attrs["config"])

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
        data = self.file[name]
        return data.asstr()[:] if data.dtype == STR else data[:]

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
        if not np.isfinite(values).all():
            raise self._damaged("embeddings", "NaN or infinite values")
        return values

    def read(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a per-view dataset, CacheError naming the fix when the file is damaged."""
        try:
            return self.file[name][np.asarray(rows)]
        except OSError as err:  # fletcher32 mismatch or a broken HDF5 structure
            raise self._damaged(name, str(err)) from err

    def _damaged(self, name: str, detail: str) -> CacheError:
        return CacheError(
            f"{self.path} is damaged ({name}: {detail}); `python cli.py verify --cache "
            f"{self.path}` names the views, and `python cli.py embed ... --overwrite` rebuilds it"
        )

    def full_mask(self, row: int) -> np.ndarray:
        """HxW uint8 {0,1}: the view's full-resolution mask."""
        import cv2

        png = self.file["mask_png"][row]
        return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)

    def image_preview(self, row: int) -> np.ndarray:
        """hxwx3 uint8 RGB: the view's image, longest side <= 512."""
        import cv2

        bgr = cv2.imdecode(self.file["image_jpeg"][row], cv2.IMREAD_COLOR)
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


@dataclass
class VerifyReport:
    """What `verify` found: an empty `problems` list means the cache is sound."""

    path: Path
    problems: list[str]
    counts: dict[str, tuple[int, int]]
    fingerprint: str

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"cache {self.path}: {'OK' if self.ok else 'DAMAGED'}"]
        lines += [
            f"  {split:5s} {imgs:5d} images {views:6d} views"
            for split, (imgs, views) in self.counts.items()
        ]
        lines.append(f"  fingerprint {self.fingerprint}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def verify(path: Path, block: int = 64) -> VerifyReport:
    """Check structure, per-view checksums, finite values and the fingerprint of a cache.

    Raises CacheError when the file cannot be opened as a cache at all.
    """
    with Cache.open(path) as cache:
        problems = _structure_problems(cache)
        if problems:
            return VerifyReport(Path(path), problems, {}, cache.fingerprint)
        ids, views = cache.column("image_id"), cache.column("view")
        stored = cache.column("view_sha256")
        digests = []
        for start in range(0, len(cache), block):
            rows = range(start, min(start + block, len(cache)))
            for row, record in zip(rows, _read_records(cache, rows, problems), strict=True):
                name = f"view {row} (image {ids[row]}, view {views[row]})"
                if record is None:
                    digests.append("")
                    continue
                if not np.isfinite(record["embeddings"]).all():
                    problems.append(f"{name}: embedding has NaN or infinite values")
                digests.append(view_digest(record))
                if digests[-1] != stored[row]:
                    problems.append(f"{name}: content does not match its sha256 (damaged)")
        identity = cache.config["identity"]
        if fingerprint(identity, stored.tolist()) != cache.fingerprint:
            problems.append("fingerprint does not match the config and view checksums")
        return VerifyReport(Path(path), problems, cache.counts(), cache.fingerprint)


def _structure_problems(cache: Cache) -> list[str]:
    n = len(cache)
    problems = []
    for name, (shape, _) in FIELDS.items():
        if name not in cache.file:
            problems.append(f"dataset {name!r} is missing")
        elif cache.file[name].shape != (n, *shape):
            problems.append(
                f"dataset {name!r} has shape {cache.file[name].shape}, expected {(n, *shape)}"
            )
    for module in ("prompt_encoder", "mask_decoder"):
        if f"sam/{module}" not in cache.file:
            problems.append(f"the pretrained {module} weights (sam/{module}) are missing")
    return problems


def _read_records(cache: Cache, rows: range, problems: list[str]) -> list[dict | None]:
    """Rows as dicts of the digest fields; None (and a problem) where HDF5 reports damage."""
    records: list[dict | None] = []
    for row in rows:
        try:
            records.append(
                {name: cache.file[name][row] for name in ("embeddings", "lowres_mask", "mask_png")}
            )
        except OSError as err:  # fletcher32 or HDF5 structure error on a damaged chunk
            problems.append(f"view {row}: cannot be read ({err})")
            records.append(None)
    return records
