"""`predict` on a folder: every image segmented prompt-free, SAM loaded once, images read
ahead in threads and encoded in batches, masks written in threads while SAM goes on, into a
folder of masks and a table of each image's water fraction; a stopped run resumes."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from floodcache.data import decode, pairs
from floodcache.predict.config import FolderConfig
from floodcache.predict.mask_score import score_of
from floodcache.predict.output_folder import SUMMARY, claim, read_summary, record_of, write_summary
from floodcache.predict.segmenter import Segmenter, warn_if_not_prompt_free, write_mask
from floodcache.prompts import NO_PROMPT
from floodcache.runtime import Runtime
from floodcache.sam.preprocess import resize_to_input
from floodcache.utils import outputs
from floodcache.utils.ahead import submit_ahead
from floodcache.utils.estimate import FirstPart

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("image", "mask", "water_fraction", "sam_iou", "problem")


@dataclass
class FolderResult:
    out: Path
    summary: Path  # SUMMARY in `out`
    predicted: int  # images segmented by this run
    kept: list[str] = field(default_factory=list)  # images whose mask was there already
    unreadable: list[str] = field(default_factory=list)  # files that are not images
    precision: str = ""  # the encoder's, resolved
    batch_size: int = 0  # images per encoder call (the last, if out of memory halved it)
    load_seconds: float = 0.0  # from the start until SAM was ready on the device
    seconds: float = 0.0  # the whole run


def run_predict_folder(config: FolderConfig) -> FolderResult:
    """Segment each image of `config.images` prompt-free, in natural order, SAM loaded once.

    Images are read (decoded, resized to SAM's input) ahead in threads while the last batch
    encodes, and masks written in other threads while the next batch encodes (a mask's row
    counts once it is on disk). A mask already in `out` (from a run that was stopped) is kept
    unless `overwrite`, so a rerun goes on where the last one stopped. A file that cannot be
    read as an image is logged and listed in the summary with its problem, and the run goes
    on. The summary is written when the run ends, however it ends. One predict at a time
    writes `out` (`<out>.lock` beside it).
    """
    with outputs.writing(Path(config.out), "predict", within=True):
        return _predict_folder(config)


def _predict_folder(config: FolderConfig) -> FolderResult:
    files = _image_files(Path(config.images), Path(config.out))
    start = time.perf_counter()
    runtime = Runtime.resolve(config.model.device, config.model.precision)
    segmenter = Segmenter(config.model, runtime, images=len(files))
    loaded = time.perf_counter() - start
    warn_if_not_prompt_free(segmenter.model, config.model.decoder)
    run = _FolderRun(config, files, segmenter, start, loaded)
    run.segment_all()
    return run.result


def _image_files(images: Path, out: Path) -> list[Path]:
    """The files of `images` to segment, in natural order; errors naming the fix."""
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: no such folder; give --image a folder of images")
    if out.resolve() == images.resolve():
        raise ValueError(f"--out {out}: masks are named after the images; give another folder")
    why = f"so both would get that stem's mask in {out}: rename one, or move it elsewhere"
    by_stem = pairs.files_by_stem(images, why)
    files = [by_stem[stem] for stem in sorted(by_stem, key=pairs.natural_key)]
    if not files:
        raise FileNotFoundError(f"{images}: no files to segment; give --image a folder of images")
    return files


class _FolderRun:
    """One run over a folder: the summary's rows (the masks kept from an earlier run, then
    each image as its mask lands on disk), and the masks handed to the writer threads, in
    order."""

    def __init__(
        self,
        config: FolderConfig,
        files: list[Path],
        segmenter: Segmenter,
        start: float,
        loaded: float,
    ):
        out = Path(config.out)
        self.config, self.files, self.segmenter, self.start = config, files, segmenter, start
        self.masks = {path.name: out / f"{path.stem}.png" for path in files}
        record = record_of(config, segmenter.model.folder, segmenter.model.sha256)
        claim(out, record, list(self.masks.values()), config.overwrite)
        self.result = FolderResult(
            out, out / SUMMARY, 0, precision=segmenter.precision, load_seconds=loaded
        )
        self.rows: dict[str, dict] = {}
        earlier = read_summary(out / SUMMARY)
        for path in files:
            kept = None if config.overwrite else _kept(path, self.masks[path.name], earlier)
            if kept is not None:
                self.rows[path.name] = kept
                self.result.kept.append(path.name)
        self.bar = tqdm(total=len(files), initial=len(self.rows), unit="image", desc="predict",
                        disable=not config.progress)  # fmt: skip
        self.writers = ThreadPoolExecutor(min(WRITERS, os.cpu_count() or 1), "predict-writer")
        self.writing: deque[tuple[Path, Future]] = deque()

    def segment_all(self) -> None:
        """Every image not kept, in batches; then the summary, however the run ends."""
        todo = [path for path in self.files if path.name not in self.rows]
        cpu = self.segmenter.device.type == "cpu"
        self.estimate = FirstPart("image", len(todo), cpu)  # said after the first batch
        readers = ThreadPoolExecutor(min(READERS, os.cpu_count() or 1), "predict-reader")
        finished = False  # else the summary's own error gives way to what stopped the run
        try:
            batch, size = [], self.segmenter.batch_size
            reading = functools.partial(_read_for_sam, max_pixels=self.config.max_pixels)
            for path, read in submit_ahead(readers, reading, todo, 2 * size):
                image = self._image(path, read)
                batch += [(path, image)] if image is not None else []
                if len(batch) >= self.segmenter.batch_size:
                    self._segment(batch)
                    batch = []
            if batch:
                self._segment(batch)
            while self.writing:
                self._written(*self.writing.popleft())
            finished = True
        finally:
            readers.shutdown(cancel_futures=True)
            self._finish(finished)

    def _image(self, path: Path, read: Future):
        """`path`'s image as read for SAM; None (listed with its problem) if unreadable."""
        try:
            return read.result()
        except decode.UnreadableFile as error:
            log.warning("%s", error)
            self.rows[path.name] = {"image": decode.path_str(path.name), "problem": str(error)}
            self.result.unreadable.append(path.name)
            self.bar.update()
            return None

    def _segment(self, batch: list[tuple[Path, tuple[np.ndarray, tuple[int, int]]]]) -> None:
        made = self.segmenter([read for _, read in batch], [NO_PROMPT] * len(batch))
        if line := self.estimate.add(len(batch)):
            log.info("predict: %s", line)
        for (path, _), (mask, score) in zip(batch, made, strict=True):
            written = self.writers.submit(_write, path, self.masks[path.name], mask, score)
            self.writing.append((path, written))
        limit = 2 * self.segmenter.batch_size
        while self.writing and (self.writing[0][1].done() or len(self.writing) > limit):
            self._written(*self.writing.popleft())

    def _written(self, path: Path, row: Future) -> None:
        self.rows[path.name] = row.result()  # a failed write raises here
        self.result.predicted += 1
        self.bar.update()

    def _finish(self, finished: bool) -> None:
        """Wait for the masks being written, count them, and write the summary."""
        self.writers.shutdown(cancel_futures=True)  # waits for the masks being written
        for path, row in self.writing:  # stopped part way: the masks written are in the summary
            if not row.cancelled() and row.exception() is None:
                self._written(path, row)
        self.bar.close()
        result = self.result
        result.batch_size = self.segmenter.batch_size
        result.seconds = time.perf_counter() - self.start
        log.info(
            "segmented %d images in %.1f s on %s in %s, %d a batch (SAM ready after %.1f s)",
            result.predicted, result.seconds, self.segmenter.device, result.precision,
            result.batch_size, result.load_seconds,
        )  # fmt: skip
        try:
            rows = [self.rows[p.name] for p in self.files if p.name in self.rows]
            write_summary(result.summary, rows, SUMMARY_COLUMNS)
        except ValueError as error:  # a full disk, say: what stopped the run matters more
            if finished:
                raise
            log.warning("%s", error)


READERS = 8  # threads reading images ahead of the encoder (decoding and resizing free the GIL)


WRITERS = 4  # threads encoding and writing masks (PNG encoding frees the GIL) while SAM goes on


def _read_for_sam(path: Path, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An image file -> (hxwx3 uint8 resized to SAM's input, (H, W) of the image)."""
    image, _ = decode.read_image(path, max_pixels)
    return resize_to_input(image), image.shape[:2]


def _write(image: Path, mask_path: Path, mask: np.ndarray, score: float) -> dict:
    """Write an image's mask (a writer thread's work) -> its summary row."""
    write_mask(mask_path, mask, score)
    return _row(image, mask_path, mask, score)


def _row(image: Path, mask_path: Path, mask: np.ndarray, score: float | None) -> dict:
    """A summary row; names that are not UTF-8 with \\xNN escapes, as the CSV is UTF-8."""
    return {
        "image": decode.path_str(image.name),
        "mask": decode.path_str(mask_path.name),
        "water_fraction": f"{np.count_nonzero(mask) / mask.size:.6f}",
        "sam_iou": "" if score is None else f"{score:.6f}",
    }


def _kept(image: Path, mask_path: Path, earlier: dict[str, dict]) -> dict | None:
    """The summary row of a mask an earlier run wrote (its own row, where its summary has
    one; else its score from the mask itself), or None if there is no such mask to keep."""
    if decode.path_str(image.name) in earlier and mask_path.is_file():
        return earlier[decode.path_str(image.name)]
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
    if mask is None:
        return None
    return _row(image, mask_path, mask >= 128, None) | {"sam_iou": score_of(mask_path)}
