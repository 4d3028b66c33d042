"""Peak memory and time of `predict` on a large GeoTIFF: a mosaic of the real scene.

    python scripts/geotiff_memory.py [--side 20000] [--model-type vit_tiny] [--device cpu]
        [--scene ../shared/geo/RGB.byte.tif] [--workdir DIR]

Writes a side x side RGB GeoTIFF of copies of the scene side by side (its grid continued;
tiled, deflate), a SAM with random weights and a run whose decoder is that
SAM's own, then runs `python cli.py predict ... --polygons` on the mosaic in a child process
and prints that process's peak RSS (the kernel's ru_maxrss for it alone, from wait4), its
wall time, and what predict said. The weights do not change the memory or the time; the
masks mean nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from floodcache.sam.model import build_sam  # noqa: E402
from floodcache.train.runs import RunRecord  # noqa: E402
from floodcache.train.weights import save_run  # noqa: E402
from floodcache.utils.hashing import sha256_file  # noqa: E402

SCENE = ROOT.parent / "shared" / "geo" / "RGB.byte.tif"


def mosaic(path: Path, side: int, source: Path = SCENE) -> Path:
    """side x side pixels of copies of `source`, written a copy at a time."""
    with rasterio.open(source) as scene:
        values, profile = scene.read(), scene.profile
    height, width = values.shape[1:]
    profile |= {
        "height": side,
        "width": side,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "bigtiff": "if_safer",
    }
    with rasterio.open(path, "w", **profile) as out:
        for row in range(0, side, height):
            for col in range(0, side, width):
                h, w = min(height, side - row), min(width, side - col)
                out.write(np.ascontiguousarray(values[:, :h, :w]), window=Window(col, row, w, h))
    return path


def random_run(folder: Path, model_type: str) -> tuple[Path, Path]:
    """(checkpoint, run folder) of a random-weights SAM whose decoder is its own."""
    torch.manual_seed(0)
    sam = build_sam(model_type)
    checkpoint = folder / "sam.pth"
    torch.save(sam.state_dict(), checkpoint)
    prompt_free = {"none": {"oracle": False, "multimask": False}}
    record = RunRecord(model_type, sha256_file(checkpoint), prompt_free)
    save_run(folder / "run", sam.mask_decoder.state_dict(), record, [{"epoch": 0}])
    return checkpoint, folder / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--model-type", default="vit_tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scene", type=Path, default=SCENE, help="the GeoTIFF to copy")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, removed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        scene = mosaic(folder / "mosaic.tif", args.side, args.scene)
        print(f"mosaic {args.side} x {args.side}: {time.perf_counter() - start:.0f} s")
        checkpoint, run = random_run(folder, args.model_type)
        command = [
            sys.executable,
            str(ROOT / "cli.py"),
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--decoder",
            str(run),
            "--image",
            str(scene),
            "--out",
            str(folder / "water.tif"),
            "--polygons",
            str(folder / "water.geojson"),
            "--device",
            args.device,
        ]
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as said:
            child = subprocess.Popen(
                command, cwd=ROOT, stdout=said, stderr=subprocess.STDOUT, text=True
            )
            # wait4: this process's own peak, not that of every child ever waited for
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
            said.seek(0)
            print(said.read()[-3000:].strip())
        code, peak = os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024
        print(f"predict: exit {code}, {seconds:.0f} s, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
