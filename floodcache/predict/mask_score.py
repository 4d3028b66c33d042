"""SAM's predicted IoU of a mask, kept inside its PNG (a tEXt chunk): a folder run stopped
before it wrote its summary (killed, power lost) resumes with the scores of the masks it
keeps, read back from the masks themselves."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_KEY = b"floodcache:sam_iou"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def with_score(png: bytes, score: float) -> bytes:
    """`png` with a tEXt chunk holding `score`, before its closing IEND chunk."""
    data = _KEY + b"\0" + f"{score:.6f}".encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end = png.rindex(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    return png[:end] + chunk + png[end:]


def score_of(path: Path) -> str:
    """The score `with_score` put in the PNG at `path` as the summary writes it ("0.912345"),
    or "" where it has none (a mask from an older floodcache) or is not a PNG."""
    png = path.read_bytes()
    offset = len(_SIGNATURE) if png.startswith(_SIGNATURE) else len(png)
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        data = png[offset + 8 : offset + 8 + length]
        if kind == b"tEXt" and data.startswith(_KEY + b"\0"):
            return data[len(_KEY) + 1 :].decode("ascii", "replace")
        offset += 12 + length
    return ""
