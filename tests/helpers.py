"""What the tests share: generated data sets and SAM checkpoints with random weights, files
with the defects real data sets have, runs of the command line, and cache comparisons."""

from __future__ import annotations

import csv
import errno
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from PIL import Image

from floodcache.cache import format as cache_format
from floodcache.cache.assembly import assemble
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.cache.writer import CacheWriter
from floodcache.data.synthetic import write_scenes
from floodcache.data.views import ViewKey
from floodcache.embed.config import EmbedConfig
from floodcache.explore.config import ExploreConfig
from floodcache.prompts import PROMPTS, Prompt, PromptOptions, make_prompt
from floodcache.sam.model import build_sam

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "flood_dataset"
PROJECT = Path(__file__).resolve().parents[1]
SIZES = [(120, 160), (200, 150), (90, 90), (150, 260), (100, 180), (170, 120), (130, 130)]


def save_checkpoint(model_type: str, path: Path, seed: int = 0) -> Path:
    """A SAM checkpoint file with random weights: a state dict, like the official files."""
    torch.manual_seed(seed)
    torch.save(build_sam(model_type).state_dict(), path)
    return path


def write_dataset(root: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """A Kaggle-layout data set (Image/<id>.jpg, Mask/<id>.png, metadata.csv) of generated
    flood scenes, one of each (H, W) size."""
    return write_scenes(root, len(sizes), sizes, seed, metadata=True)


def embed_config(data_dir: Path, checkpoint: Path, cache: Path, **overrides) -> EmbedConfig:
    """A quick embed of the test-only vit_tiny SAM, one augmented view per training image."""
    settings = dict(
        cache=cache,
        data_dir=data_dir,
        checkpoint=checkpoint,
        model_type="vit_tiny",
        augment=1,
        batch_size=3,
        workers=0,
        progress=False,
    )
    return EmbedConfig(**(settings | overrides))


def embed_command(data_dir: Path, checkpoint: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        str(PROJECT / "cli.py"),
        "embed",
        "--data",
        str(data_dir),
        "--checkpoint",
        str(checkpoint),
        "--model-type",
        "vit_tiny",
        "--cache",
        str(cache),
        "--augment",
        "2",
        "--batch-size",
        "1",
        "--workers",
        "0",
    ]


def torchrun(args: list[str], port: int) -> list[str]:
    """`args` (a `python cli.py ...` command) as two CPU processes under torchrun."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port),
        *args[1:],
    ]


def kill_after_parts(command: list[str], parts: Path, count: int) -> None:
    """Start `command`, SIGKILL it once `parts` holds `count` finished parts."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.h5"))) < count:
        assert process.poll() is None, "embed finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def held_by_another_process(take: Callable[[], object]) -> Iterator[int]:
    """`take()` (a lock, a writer: something with `close` or `release`) run in a forked
    process, held there until the block ends; yields that process's id."""
    context = multiprocessing.get_context("fork")
    taken, stop = context.Event(), context.Event()

    def hold() -> None:
        held = take()
        taken.set()
        stop.wait(60)
        getattr(held, "close", getattr(held, "release", None))()

    process = context.Process(target=hold)
    process.start()
    try:
        assert taken.wait(30), "the other process could not take it"
        yield process.pid
    finally:
        stop.set()
        process.join(30)


def full_disk_save(real_save: Callable, only: str | None = None) -> Callable:
    """torch.save as on a full disk (to /dev/full, for files named `only`, else all): given a
    path, torch's writer fails as it does (a RuntimeError naming no file); given an open file,
    the file's write fails (an OSError)."""

    def save(obj, target, *args, **kwargs):
        if only is not None and Path(getattr(target, "name", target)).name != only:
            return real_save(obj, target, *args, **kwargs)
        if isinstance(target, (str, os.PathLike)):
            return real_save(obj, "/dev/full", *args, **kwargs)
        with open("/dev/full", "wb") as full:
            return real_save(obj, full, *args, **kwargs)

    return save


def full_disk_at(monkeypatch, full: Callable[[str], bool]) -> None:
    """os.replace fails as on a full disk (ENOSPC) for the targets `full` picks; others go."""
    replace = os.replace

    def replaced(source, target):
        if full(str(target)):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", replaced)


def read_everything(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        content = {f"attr:{k}": v for k, v in f.attrs.items()}
        f.visititems(
            lambda name, item: (
                content.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return content


def assert_same_cache(a: Path, b: Path) -> None:
    first, second = read_everything(a), read_everything(b)
    assert first.keys() == second.keys()
    for key in first:
        x, y = first[key], second[key]
        if isinstance(x, str) and key in ("attr:config", "attr:config_sha256"):
            continue  # records the command line, which names the cache path (and its sha256)
        if isinstance(x, np.ndarray) and x.dtype == object:
            assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True)), key
        else:
            assert np.array_equal(x, y), key


def start_interruptible(command: list[str]) -> subprocess.Popen:
    """Start `command` so that SIGINT reaches it as Ctrl-C in a terminal would: in a process
    group of its own, which `press_ctrl_c` signals whole, the processes it started included.

    A shell's background jobs (CI runners among them) inherit an ignored SIGINT; restore it.
    """
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def press_ctrl_c(process: subprocess.Popen) -> None:
    """SIGINT to the process group of `start_interruptible`'s process, as a terminal sends."""
    os.killpg(process.pid, signal.SIGINT)


IDENTITY = {"model_type": "vit_tiny", "checkpoint_sha256": "0" * 64}


SAM_STATE = {"mask_decoder/w": np.arange(4, dtype=np.float32), "prompt_encoder/w": np.ones(2)}


def make_records(plan: list[ViewKey], seed: int = 0) -> list[dict]:
    """A record (every cache field) per planned view, different in every field."""
    rng = np.random.default_rng(seed)
    records = []
    for row, key in enumerate(plan):
        records.append(
            {
                "embeddings": rng.standard_normal(cache_format.EMBEDDING_SHAPE).astype(np.float16),
                "lowres_mask": (rng.random((256, 256)) > 0.5).astype(np.uint8),
                "mask_png": rng.integers(0, 255, 50 + row, dtype=np.uint8),
                "image_jpeg": rng.integers(0, 255, 80 + 3 * row, dtype=np.uint8),
                "image_id": key.image_id,
                "split": key.split,
                "image_file": f"Image/{key.image_id}.jpg",
                "mask_file": f"Mask/{key.image_id}.png",
                "view": key.view,
                "original_size": np.array([400 + row, 600], np.int32),
                "input_size": np.array([683, 1024], np.int32),
                "water_fraction": np.float32(row / 10),
            }
        )
    return records


def make_plan(views: int) -> list[ViewKey]:
    return [ViewKey(f"img{i // 2}", i % 2, "train") for i in range(views)]


def write_cache(path: Path, plan: list[ViewKey]) -> None:
    """A complete cache of `make_records(plan)` at `path`, written as `embed` writes one."""
    writer = CacheWriter(path, IDENTITY, {"identity": IDENTITY})
    writer.write_part(make_records(plan), "0")
    assemble(writer, plan, SAM_STATE)
    writer.close()


def assert_cache_holds(path, plan: list[ViewKey], records: list[dict]) -> None:
    """The cache at `path` has each record in its planned row, field for field, and verifies."""
    assert verify(path).ok
    with Cache.open(path) as built:
        assert built.column("image_id").tolist() == [key.image_id for key in plan]
        for row, record in enumerate(records):
            record = record | {"view_sha256": cache_format.view_digest(record)}
            for name, (_, dtype) in cache_format.FIELDS.items():
                stored = built.file[name][row]
                if dtype is cache_format.STR:
                    assert stored.decode() == record[name], (name, row)
                else:
                    np.testing.assert_array_equal(stored, record[name], err_msg=f"{name} {row}")


def rectangle(shape=(40, 60), rows=(10, 30), cols=(5, 45)) -> np.ndarray:
    """HxW uint8 {0,1} with water on rows[0]..rows[1] and cols[0]..cols[1], inclusive."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = 1
    return mask


def blobs() -> np.ndarray:
    """HxW bool: an irregular two-part water mask (a disc and a ring)."""
    mask = np.zeros((64, 80), dtype=np.uint8)
    cv2.circle(mask, (20, 30), 12, 1, thickness=-1)
    cv2.circle(mask, (58, 28), 15, 1, thickness=3)
    return mask.astype(bool)


def prompt(name: str, mask, epoch: int = 0, view: int = 0, **options) -> Prompt | None:
    return make_prompt(PROMPTS[name], mask, 7, "img_001", view, epoch, PromptOptions(**options))


def on_water(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each XY point lies on water."""
    cols, rows = points.astype(int).T
    return mask[rows, cols].astype(bool)


def mask_png(path) -> np.ndarray:
    """HxW bool: the water of a mask PNG that predict wrote (255 = water)."""
    return np.array(Image.open(path)) == 255


def photo_folder(tiny_data, folder, names=("0.jpg", "3.jpg", "10.jpg")):
    """A folder of photos named `names` (tiny_data's images 0, 3, 5), and a file that is not
    an image."""
    folder.mkdir()
    for name, source in zip(names, ("0.jpg", "3.jpg", "5.jpg"), strict=True):
        shutil.copy(tiny_data / "Image" / source, folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def read_predictions(out) -> dict[str, dict]:
    """predict's predictions.csv in `out`, by image file name."""
    with (out / "predictions.csv").open(newline="") as lines:
        return {row["image"]: row for row in csv.DictReader(lines)}


# Files with the defects real data sets have. Each writer saves through Pillow with an
# explicit format, so that the content can differ from the extension on purpose (a JPEG
# named .png, a WebP named .jpg).


def picture(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """HxWx3 uint8 RGB of flat 4x4 blocks, different for every seed (so never a duplicate)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, ((height + 3) // 4, (width + 3) // 4, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((4, 4, 1), np.uint8))[:height, :width]


def water(seed: int, height: int = 12, width: int = 16) -> np.ndarray:
    """HxW uint8 {0, 255} mask of 2x2 blocks with some water and some land, unique per seed."""
    rng = np.random.default_rng(seed + 10_000)
    blocks = rng.integers(0, 2, ((height + 1) // 2, (width + 1) // 2), dtype=np.uint8)
    blocks.flat[:2] = (0, 1)
    return (np.kron(blocks, np.ones((2, 2), np.uint8)) * 255)[:height, :width]


def save(path: Path, pixels: np.ndarray | Image.Image, fmt: str, **options) -> Path:
    """Write `pixels` in format `fmt` (a Pillow format name) whatever the extension of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, format=fmt, **options)
    return path


def save_rotated_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    """A JPEG of `pixels` as stored, with EXIF orientation `orientation` (0x0112) set."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(path, pixels, "JPEG", quality=95, exif=exif)


def save_truncated_jpeg(path: Path, pixels: np.ndarray) -> Path:
    """A JPEG cut after half of its bytes, as an interrupted download leaves it."""
    save(path, pixels, "JPEG", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def save_text(path: Path, text: str = "404 Not Found\n") -> Path:
    """A text file (e.g. an HTML error page saved under an image name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_zoo(root: Path) -> tuple[Path, Path]:
    """images/ and masks/ folders (no metadata.csv) with one pair per defect, named after it:
    every problem code of floodcache.data but the metadata ones (see tests/data/test_audit.py)."""
    images, masks = root / "images", root / "masks"
    seeds = iter(range(1000))

    def pair(name, image=None, mask=None, ext=".png", fmt="PNG", **options):
        image = picture(next(seeds)) if image is None else image
        save(images / f"{name}{ext}", image, fmt, **options)
        save(masks / f"{name}.png", water(next(seeds)) if mask is None else mask, "PNG")

    pair("ok")
    pair("jpeg_as_png", fmt="JPEG")
    pair("webp_as_jpg", ext=".jpg", fmt="WEBP", lossless=True)
    save_rotated_jpeg(images / "exif.jpg", picture(1001), orientation=6)
    save(masks / "exif.png", water(1001, 16, 12), "PNG")  # fits the upright 12x16 picture
    pair("rgba", Image.fromarray(picture(1002)).convert("RGBA"))
    pair("palette", Image.fromarray(picture(1003)).convert("P"))
    pair("cmyk", Image.fromarray(picture(1004)).convert("CMYK"), ext=".jpg", fmt="JPEG")
    pair("sixteen", (picture(1005)[:, :, 0].astype(np.uint16) * 257))
    pair("grey", picture(1006)[:, :, 1])
    pair("grey_mask", mask=np.where(water(1007) > 0, 200, 90).astype(np.uint8))
    pair("rgb_mask", mask=np.repeat(water(1008)[:, :, None], 3, axis=2))
    pair("empty", mask=np.zeros((12, 16), np.uint8))
    pair("full", mask=np.full((12, 16), 255, np.uint8))
    pair("zero_byte")
    (images / "zero_byte.png").write_bytes(b"")
    save_truncated_jpeg(images / "truncated.jpg", picture(1009, 64, 64))
    save(masks / "truncated.png", water(1009, 64, 64), "PNG")
    save_text(images / "text.jpg")
    save(masks / "text.png", water(1010), "PNG")
    save(images / "bad_mask.png", picture(1011), "PNG")
    save_text(masks / "bad_mask.png")
    save(images / "no_mask.png", picture(1012), "PNG")
    save(masks / "no_image.png", water(1013), "PNG")
    pair("small_mask", mask=water(1014, 6, 8))
    pair("turned_mask", mask=water(1015, 16, 12))
    pair("swap_a", picture(1016, 12, 16), mask=water(1016, 10, 20))
    pair("swap_b", picture(1017, 10, 20), mask=water(1017, 12, 16))
    pair("dup_a", picture(1018))
    pair("dup_b", picture(1018))
    pair("copy_a", mask=water(1019))
    pair("copy_b", mask=water(1019))
    save_geotiff(images / "georef.tif", picture(1020))
    save_geotiff(masks / "georef.tif", water(1020), shift=1)  # a pixel east of its image
    return images, masks


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def expected_interval(values: np.ndarray) -> tuple[float, float]:
    """The report's 95% bootstrap interval of a mean, recomputed from its documented recipe:
    `RESAMPLES` resamples of the views from a Generator seeded with `SEED`, percentiles."""
    from floodcache.report.statistics import RESAMPLES, SEED

    rng = np.random.default_rng(SEED)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def expected_p(before: np.ndarray, after: np.ndarray) -> str:
    """The two-sided Wilcoxon signed-rank p of paired values, as the report prints it."""
    from scipy.stats import wilcoxon

    if np.all(before == after):
        return "– (no view differs)"
    p = wilcoxon(after, before).pvalue
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def save_geotiff(path: Path, pixels: np.ndarray, shift: int = 0, crs: str = "EPSG:32618") -> Path:
    """HxW or HxWx3 `pixels` as a GeoTIFF on a 10 m grid, moved `shift` pixels east."""
    from affine import Affine

    bands = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    transform = Affine(10, 0, 300000 + 10 * shift, 0, -10, 2800000)
    profile = {"driver": "GTiff", "crs": crs, "transform": transform, "nodata": None}
    from tests.rasters import write_raster  # tests.rasters builds on this module

    return write_raster(path, np.ascontiguousarray(bands), **profile)


def run_script(name: str, *args: object, cwd: Path | None = None, **env: str):
    """scripts/`name` run with `args` as a user runs it, from `cwd` (the checkout unless
    given), `env` added to the environment; the finished process, its output as text."""
    path = PROJECT / "scripts" / name
    program = ["bash", str(path)] if name.endswith(".sh") else [sys.executable, str(path)]
    return subprocess.run(
        [*program, *map(str, args)],
        cwd=cwd or PROJECT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def tiny_geotiff(path: Path, height: int = 200, width: int = 300) -> Path:
    """A generated RGB GeoTIFF (EPSG:32618, 10 m pixels): a dark river across a bright field."""
    import rasterio
    from affine import Affine

    pixels = np.full((3, height, width), 180, np.uint8)
    pixels[:, height // 3 : height // 2] = 40
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(10, 0, 300000, 0, -10, 2800000),
    }
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    return path


# A changed value of each identity field of TrainConfig, for a run trained with its defaults
# but for train_prompts and epochs (a fixture's), in fp32
RUN_CHANGES = {
    "train_prompts": "point,box",
    "epochs": 2,
    "lr": 2e-4,
    "step_size": 4,
    "gamma": 0.25,
    "batch_size": 8,
    "seed": 1,
    "points": 2,
    "box_jitter": 0.2,
    "precision": "bf16",
}


@contextmanager
def serving(config: ExploreConfig) -> Iterator[str]:
    """The URL of an explorer serving `config`, in a thread of this process, until the block
    ends."""
    # polars comes with the explorer: imported here, so that the modules that import these
    # helpers do not (the GPU check runs some of them without polars)
    from floodcache.explore.run import close_explorer, open_explorer

    server = open_explorer(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        thread.join()
        close_explorer(server)
