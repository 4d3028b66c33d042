"""The HDF5 embedding cache's format: its fields, checksums and fingerprint (`reader` reads a
cache, `verify` checks one, `writer` and `assembly` write one).

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
    attrs: schema_version, model_type, checkpoint_sha256, config (JSON), fingerprint, complete,
           metadata_sha256 (every other per-view field), sam_sha256 (the sam/ weights),
           config_sha256 (the config attr: the settings, command and audit a report shows)

Every byte that changes a result is under a checksum `verify` checks: a view's numbers under
its view_sha256, the other fields under metadata_sha256, the weights under sam_sha256, and
the identity and view checksums under the fingerprint, the whole config under config_sha256.
Caches written before metadata_sha256 and sam_sha256 existed are refused with the command that
rebuilds them; those written before config_sha256 are read, with no audit recorded.

Written crash-safely by `writer` and `assembly`: whole or absent, never half written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:
    from floodcache.sam.modeling import Sam

SCHEMA_VERSION = 1


EMBEDDING_SHAPE = (256, 64, 64)  # one view's image embedding


STR = h5py.string_dtype()


BYTES = h5py.vlen_dtype(np.uint8)


# Per-view fields: name -> (shape of one row, dtype). One table drives parts and final file.
FIELDS: dict[str, tuple[tuple[int, ...], Any]] = {  # dtype: numpy's or h5py's
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


VIEW_FIELDS = ("embeddings", "lowres_mask", "mask_png")  # under each view's view_sha256
METADATA_FIELDS = tuple(name for name in FIELDS if name not in (*VIEW_FIELDS, "view_sha256"))
METADATA_SHA256, SAM_SHA256 = "metadata_sha256", "sam_sha256"  # the attrs of their digests
CONFIG_SHA256 = "config_sha256"  # the attr of the config attr's digest


class CacheError(RuntimeError):
    """A cache that cannot be used as asked; the message says what to run instead."""


def parts_folder(cache: Path) -> Path:
    """Where an unfinished embed run keeps the parts of `cache`: `<cache>.parts`."""
    return cache.with_name(cache.name + ".parts")


def column(group: h5py.Group, name: str) -> np.ndarray:
    """A whole per-view dataset of `group`: strings decoded to str, bytes as uint8 arrays."""
    data = group[name]
    return data.asstr()[:] if h5py.check_string_dtype(data.dtype) else data[:]


def view_digest(record: dict) -> str:
    """sha256 of what a view's numbers are: embedding, low-res target and full mask bytes."""
    digest = hashlib.sha256()
    # hashlib reads a C-contiguous array's buffer (.data) in place: the bytes of .tobytes(),
    # without a 2 MiB copy per view (ascontiguousarray copies only what is not already so).
    digest.update(np.ascontiguousarray(record["embeddings"], np.float16).data)
    digest.update(np.ascontiguousarray(record["lowres_mask"], np.uint8).data)
    digest.update(np.ascontiguousarray(record["mask_png"], np.uint8).data)
    return digest.hexdigest()


def finite(values: np.ndarray) -> bool:
    """Whether every value is finite. float16 by its exponent bits (all set: infinite or NaN):
    integer maths, 5x faster than isfinite on float16."""
    if values.dtype != np.float16:
        return bool(np.isfinite(values).all())
    exponents = np.bitwise_and(np.ascontiguousarray(values).view(np.uint16), 0x7C00)
    return not exponents.size or exponents.max() != 0x7C00


def view_problems(record: dict, stored_sha256: str) -> list[str]:
    """What is wrong with one view's numbers (`record`: its VIEW_FIELDS): an embedding that
    is not finite, content that is not what its sha256 says. Empty when sound."""
    problems = []
    if not finite(record["embeddings"]):
        problems.append("embedding has NaN or infinite values")
    if view_digest(record) != stored_sha256:
        problems.append("content does not match its sha256 (damaged)")
    return problems


def metadata_digest(columns: dict[str, np.ndarray]) -> str:
    """sha256 of the METADATA_FIELDS columns, as `Cache.column` reads them (str for strings,
    uint8 arrays for bytes): each value's length goes first, so no two columns hash alike."""
    digest = hashlib.sha256()
    for name in METADATA_FIELDS:
        shape, dtype = FIELDS[name]
        column = columns[name]
        digest.update(f"{name} {len(column)}".encode())
        if dtype is STR or dtype is BYTES:
            for value in column:
                data = (
                    value.encode() if dtype is STR else np.ascontiguousarray(value, np.uint8).data
                )
                digest.update(len(data).to_bytes(8, "little"))
                digest.update(data)
        else:
            little_endian = np.dtype(dtype).newbyteorder("<")
            digest.update(np.ascontiguousarray(column, little_endian).data)
    return digest.hexdigest()


def sam_digest(group: h5py.Group) -> str:
    """sha256 of the weights stored under `group` (a cache's sam/): names, dtypes, shapes and
    values, in name order."""
    weights: dict[str, h5py.Dataset] = {}
    group.visititems(
        lambda name, item: (
            weights.__setitem__(name, item) if isinstance(item, h5py.Dataset) else None
        )
    )
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name][()])
        digest.update(f"{name} {value.dtype.str} {value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()


def sam_prompt_state(sam: Sam) -> dict[str, np.ndarray]:
    """Pretrained prompt encoder and mask decoder weights, keyed `module/param/path` as the
    cache stores them under sam/ (`Cache.sam_state` reads them back)."""
    return {
        f"{module}/{name.replace('.', '/')}": tensor.detach().cpu().numpy()
        for module in ("prompt_encoder", "mask_decoder")
        for name, tensor in getattr(sam, module).state_dict().items()
    }


def config_digest(config: str) -> str:
    """sha256 of the config attr as stored (its JSON text)."""
    return hashlib.sha256(config.encode()).hexdigest()


def fingerprint(identity: dict, digests: list[str]) -> str:
    """sha256 of what produced the cache (identity config) and of every view's digest, in order."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for view_sha in digests:
        digest.update(view_sha.encode())
    return digest.hexdigest()
