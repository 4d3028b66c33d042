"""What `predict` is asked (`PredictConfig`, routed by `run.run_predict`): one photo
(`PhotoConfig`), a folder of them (`FolderConfig`), or a georeferenced scene or a folder of
them (`SceneConfig`), each with the fine-tuned SAM it runs (`ModelConfig`). Torch-free, so
that the command line reads its defaults from here at once.

Every field says, with `setting(..., identity=...)`, whether a change of it makes other
predictions: an output folder records the identity of what it holds and refuses, listing the
differences, to mix it with predictions made otherwise (`output_folder.claim`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from floodcache.data.raster import RasterReading
from floodcache.predict.geotiff import PROBABILITIES
from floodcache.predict.tiles import check_tiling
from floodcache.settings import (
    AUTO_PRECISION,
    MAX_PIXELS,
    OptionConflict,
    check_at_least,
    check_choice,
    check_precision,
)
from floodcache.utils.identity import setting


@dataclass
class ModelConfig:
    """The fine-tuned SAM a prediction runs, and where and how it runs.

    None of it is a folder's identity by itself: the decoder's sha256 is recorded instead of
    its path (a run folder may move), the checkpoint must be the one the decoder's cache was
    embedded with (checked), and the device and precision change the masks only up to
    rounding."""

    # the SAM checkpoint the run's cache was embedded with (None: the official one, or with
    # random_weights the seeded untrained SAM of a random-weights run)
    checkpoint: Path | None = setting(identity=False)
    # run folder written by `train` (trained on `none`, for prompt-free masks)
    decoder: Path = setting(identity=False)
    device: str | None = setting(None, identity=False)
    # the encoder's, as embed's: fp16 on CUDA; on a CPU bf16 where native, else fp32
    precision: str = setting(AUTO_PRECISION, identity=False)
    # for a run embedded with --random-weights: the same seeded untrained SAM
    random_weights: bool = setting(False, identity=False)

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")


@dataclass
class PhotoConfig:
    """One image to segment with a fine-tuned decoder.

    One mask file records no identity: an existing `out` is refused unless `overwrite`,
    whatever made it, so no field here is declared identity."""

    model: ModelConfig = setting(identity=False)
    image: Path = setting(identity=False)
    # the mask as PNG: 255 = water, 0 = not water, the image's size
    out: Path = setting(identity=False)
    # water clicks, XY original-image pixels
    points: tuple[tuple[float, float], ...] = setting((), identity=False)
    # not-water clicks, XY pixels
    background: tuple[tuple[float, float], ...] = setting((), identity=False)
    # XYXY original-image pixels
    box: tuple[float, float, float, float] | None = setting(None, identity=False)
    overwrite: bool = setting(False, identity=False)  # replace an existing `out` file
    # a larger image is refused, never decoded
    max_pixels: int = setting(MAX_PIXELS, identity=False)

    def __post_init__(self) -> None:
        check_at_least(self.max_pixels, 1, "--max-pixels")
        for flag, values in self.prompt_values():
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{flag} {_shown(values)}: every coordinate must be a number")
        if self.box is not None and not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
            raise ValueError(f"--box {_shown(self.box)}: give X0,Y0,X1,Y1 with X0 < X1, Y0 < Y1")

    def prompt_values(self) -> list[tuple[str, tuple[float, ...]]]:
        """(flag, its numbers) of each click and the box, to check them."""
        clicks = [("--point", p) for p in self.points] + [
            ("--background", p) for p in self.background
        ]
        return clicks + ([("--box", self.box)] if self.box is not None else [])

    def check_inside(self, height: int, width: int) -> None:
        """ValueError naming the flag where a click or the box lies outside the image: SAM
        would take it, and give a mask of nothing."""
        for flag, values in self.prompt_values():
            xs, ys = values[0::2], values[1::2]
            if not (all(0 <= x <= width for x in xs) and all(0 <= y <= height for y in ys)):
                raise ValueError(
                    f"{flag} {_shown(values)} is outside the image {self.image} "
                    f"({width} x {height} pixels, X from 0 to {width}, Y from 0 to {height})"
                )


def _shown(values) -> str:
    return ",".join(f"{v:g}" for v in values)


@dataclass
class FolderConfig:
    """Every file of a folder, segmented prompt-free with a fine-tuned decoder."""

    model: ModelConfig = setting(identity=False)
    # a folder: each visible file in it is read as an image (not subfolders)
    images: Path = setting(identity=False)
    # another folder: one mask <stem>.png per image (255 = water), and SUMMARY
    out: Path = setting(identity=False)
    # segment again images whose mask an earlier run wrote
    overwrite: bool = setting(False, identity=False)
    progress: bool = setting(True, identity=False)
    # a larger image is listed as unreadable, never decoded: the masks made are the same
    max_pixels: int = setting(MAX_PIXELS, identity=False)

    def __post_init__(self) -> None:
        check_at_least(self.max_pixels, 1, "--max-pixels")


@dataclass
class SceneConfig:
    """A georeferenced raster, or a folder of them, segmented prompt-free tile by tile into
    water masks on the same grid. The tiling, the reading of the bands, the smallest polygon
    and the probabilities' type decide a scene's outputs: a folder's identity."""

    model: ModelConfig = setting(identity=False)
    # a raster with a CRS (GeoTIFF, COG...), or a folder of them
    image: Path = setting(identity=False)
    # The water mask, a COG on the input's grid: 1 water, 0 land, 255 no data. For a folder,
    # a folder: <stem>.tif per scene and predictions.csv.
    out: Path = setting(identity=False)
    # the water as GeoJSON (a folder: <stem>.geojson per scene)
    polygons: Path | None = setting(None, identity=False)
    # m2: smaller polygons are left out of the GeoJSON
    min_area: float = setting(0.0, identity=True)
    # P(water) as a COG (a folder: <stem>.tif per scene)
    probabilities: Path | None = setting(None, identity=False)
    probability_dtype: str = setting("uint8", identity=True)  # a key of geotiff.PROBABILITIES
    # pixels a side at the scene's resolution: SAM's input, no resize
    tile: int = setting(1024, identity=True)
    # pixels shared by neighbouring tiles, where their logits are blended
    overlap: int = setting(128, identity=True)
    # bands and scaling
    raster: RasterReading = setting(default_factory=RasterReading, identity=True)
    # replace existing outputs (a folder's: segment every scene again)
    overwrite: bool = setting(False, identity=False)
    progress: bool = setting(True, identity=False)

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        check_choice(self.probability_dtype, PROBABILITIES, "--probability-dtype")
        check_at_least(self.min_area, 0, "--min-area")


# The options of scenes alone, in the order the refusal names them; None: not given.
SCENE_ONLY: tuple[str, ...] = (
    "tile",
    "overlap",
    "bands",
    "scale",
    "polygons",
    "min_area",
    "probabilities",
)
SCENE_ONLY += ("probability_dtype",)
PROMPTS_FOR_PHOTOS = "--point, --background and --box are for photos"


@dataclass
class PredictConfig:
    """What `predict` is asked, whatever `image` turns out to be: a photo, a folder of them,
    a georeferenced raster or a folder of them (`run.run_predict` looks). Each kind takes
    its own options and refuses the others' (`photo`, `folder`, `scene`).

    The options of scenes alone are None when not given, so that one given for a photo is
    refused, not dropped; a scene takes `SceneConfig`'s default for one not given. Fields
    are identity where the config they go to declares them so."""

    model: ModelConfig = setting(identity=False)
    image: Path = setting(identity=False)  # a file or a folder, photos or scenes
    out: Path = setting(identity=False)  # a file, or a folder for a folder
    points: tuple[tuple[float, float], ...] = setting((), identity=False)  # photos
    background: tuple[tuple[float, float], ...] = setting((), identity=False)  # photos
    box: tuple[float, float, float, float] | None = setting(None, identity=False)  # photos
    overwrite: bool = setting(False, identity=False)
    progress: bool = setting(True, identity=False)
    # photos: a scene is read window by window, its size costs no memory
    max_pixels: int = setting(MAX_PIXELS, identity=False)
    tile: int | None = setting(None, identity=True)
    overlap: int | None = setting(None, identity=True)
    bands: tuple[int, ...] | None = setting(None, identity=True)
    scale: str | None = setting(None, identity=True)
    polygons: Path | None = setting(None, identity=False)
    min_area: float | None = setting(None, identity=True)
    probabilities: Path | None = setting(None, identity=False)
    probability_dtype: str | None = setting(None, identity=True)

    def photo(self) -> PhotoConfig:
        """One photo; OptionConflict naming a scene's option, if one was given."""
        self._refuse_scene_options()
        return PhotoConfig(
            self.model, self.image, self.out, self.points, self.background, self.box,
            self.overwrite, self.max_pixels,
        )  # fmt: skip

    def folder(self) -> FolderConfig:
        """A folder of photos, prompt-free; OptionConflict for a prompt or a scene's option."""
        self._refuse_scene_options()
        if self.points or self.background or self.box:
            raise OptionConflict(
                "--point, --background and --box are for one image; give --image FILE"
            )
        return FolderConfig(
            self.model, self.image, self.out, self.overwrite, self.progress, self.max_pixels
        )

    def scene(self) -> SceneConfig:
        """A scene or a folder of them, prompt-free; OptionConflict for a prompt."""
        if self.points or self.background or self.box:
            raise OptionConflict(PROMPTS_FOR_PHOTOS)
        given = {name: getattr(self, name) for name in self._scene_options()}
        reading = {name: given.pop(name) for name in ("bands", "scale") if name in given}
        return SceneConfig(
            self.model, self.image, self.out, raster=RasterReading(**reading),
            overwrite=self.overwrite, progress=self.progress, **given,
        )  # fmt: skip

    def _scene_options(self) -> list[str]:
        """The options of scenes alone that were given."""
        return [name for name in SCENE_ONLY if getattr(self, name) is not None]

    def _refuse_scene_options(self) -> None:
        given = self._scene_options()
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise OptionConflict(f"{flag} is for georeferenced rasters; {self.image} holds none")
