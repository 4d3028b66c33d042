"""The README's picture of `predict` on a GeoTIFF: the real scene and the mask predict writes.

    python scripts/geotiff_picture.py [--out docs/geotiff_predict.png] [--model-type vit_b]
        [--scene ../shared/geo/RGB.byte.tif]

The mask comes from SAM with RANDOM WEIGHTS (no checkpoint is needed, none is downloaded): it
shows what predict writes (water, land, no data, on the scene's grid), not how well a
fine-tuned decoder finds water. The picture says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from geotiff_memory import SCENE, random_run  # noqa: E402

from floodcache.predict.config import ModelConfig, SceneConfig  # noqa: E402
from floodcache.predict.scene import run_predict_scene  # noqa: E402

COLOURS = {0: ("#d9c8a0", "land (0)"), 1: ("#2c7fb8", "water (1)"), 255: ("#ffffff", "no data")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "geotiff_predict.png")
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--scene", type=Path, default=SCENE, help="the GeoTIFF to segment")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, run = random_run(Path(tmp), args.model_type)
        model = ModelConfig(checkpoint, run, "cpu")
        config = SceneConfig(model, args.scene, Path(tmp) / "water.tif")
        run_predict_scene(config)
        with rasterio.open(config.out) as mask, rasterio.open(args.scene) as scene:
            values, pixels = mask.read(1), scene.read().transpose(1, 2, 0)
    classes = np.select([values == 0, values == 1], [0, 1], 2)
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 4.3), dpi=80)
    left.imshow(pixels)
    shown = "RGB.byte.tif (Landsat 7, EPSG:32618)" if args.scene == SCENE else args.scene.name
    left.set_title(shown, fontsize=9)
    right.imshow(classes, cmap=ListedColormap([c for c, _ in COLOURS.values()]), vmin=0, vmax=2)
    right.set_title(
        f"water.tif: SAM {args.model_type} with RANDOM WEIGHTS\n(the format, not a flood map)",
        fontsize=9,
    )
    right.legend(
        handles=[Patch(color=c, label=label) for c, label in COLOURS.values()],
        loc="lower left",
        fontsize=7,
    )
    for axis in (left, right):
        axis.set_xticks([]), axis.set_yticks([])
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, bbox_inches="tight", pad_inches=0.1)
    # a palette of 64 colours: the speckled random mask makes a full-colour PNG large
    Image.open(args.out).convert("RGB").quantize(64).save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
