"""Content hashes of files."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK_SIZE = 1 << 20  # bytes per read: multi-GB checkpoints never sit in memory


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK_SIZE):
            digest.update(block)
    return digest.hexdigest()
