"""`embed`: the cache it writes, SAM-exact; reruns, refusals, resumes, real images."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from floodcache.cache import writer as cache_writer
from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.data import decode, pairs
from floodcache.data.raster import RasterReading
from floodcache.embed import encode, readers
from floodcache.embed.part_writer import part_name
from floodcache.embed.run import run_embed
from floodcache.sam import batch_encoder
from floodcache.sam.encoder import relative_error
from floodcache.sam.model import load_sam
from floodcache.settings import RESIZE_METHODS
from tests.helpers import (
    REAL_DATA,
    assert_same_cache,
    embed_command,
    embed_config,
    kill_after_parts,
    save,
    write_dataset,
)
from tests.rasters import write_chips


def test_cache_layout_and_counts(tiny_cache):
    report = verify(tiny_cache)
    assert report.ok, report.problems
    with Cache.open(tiny_cache) as cache:
        n = len(cache)
        assert cache.file["embeddings"].shape == (n, 256, 64, 64)
        assert cache.file["embeddings"].dtype == np.float16
        assert cache.file["embeddings"].chunks == (1, 256, 64, 64)
        assert cache.file["lowres_mask"].shape == (n, 256, 256)
        attrs = cache.file.attrs
        for key in ("schema_version", "model_type", "checkpoint_sha256", "config", "fingerprint"):
            assert key in attrs
        counts = cache.counts()
        # 7 images: 5 train (views 0 and 1), 1 val, 1 test (view 0 only).
        assert counts == {"train": (5, 10), "val": (1, 1), "test": (1, 1)}
        assert set(cache.column("view")[cache.rows("val")]) == {0}
        assert cache.sam_state("mask_decoder")  # the pretrained decoder travels with the cache


def test_view_zero_matches_the_image_and_sam_predictor(tiny_cache, tiny_checkpoint):
    sam = load_sam("vit_tiny", tiny_checkpoint)
    predictor = SamPredictor(sam)
    with Cache.open(tiny_cache) as cache:
        for row in cache.rows(view0_only=True)[:3]:
            pair = pairs.Pair(
                str(cache.column("image_id")[row]),
                Path(cache.column("image_file")[row]),
                Path(cache.column("mask_file")[row]),
            )
            image, mask = pairs.load_pair(pair)
            assert np.array_equal(cache.full_mask(row), mask)
            assert tuple(cache.column("original_size")[row]) == mask.shape
            predictor.set_image(image)
            assert relative_error(cache.embeddings([row])[0], predictor.features[0]) < 1e-3


def test_vit_b_cached_embedding_equals_sam_predictor(vit_b_checkpoint, tmp_path):
    """The real ViT-B architecture, fp32: relative error < 1e-3 against SamPredictor."""
    data_dir = write_dataset(tmp_path / "data", [(180, 240)])
    cache = tmp_path / "b.h5"
    run_embed(
        embed_config(
            data_dir,
            vit_b_checkpoint,
            cache,
            model_type="vit_b",
            augment=0,
            fractions=(1.0, 0.0, 0.0),
        )
    )
    image, _ = pairs.load_pair(pairs.find_pairs(data_dir)[0][0])
    predictor = SamPredictor(load_sam("vit_b", vit_b_checkpoint))
    predictor.set_image(image)
    with Cache.open(cache) as opened:
        error = relative_error(opened.embeddings([0])[0], predictor.features[0])
    assert error < 1e-3


def test_rerun_of_complete_cache_does_nothing(tiny_cache, tiny_data, tiny_checkpoint):
    before = tiny_cache.stat().st_mtime_ns
    result = run_embed(embed_config(tiny_data, tiny_checkpoint, tiny_cache))
    assert result.embedded == 0 and tiny_cache.stat().st_mtime_ns == before


def test_defaults_fit_the_device_and_the_result_says_where_time_went(
    tiny_data, tiny_checkpoint, tmp_path
):
    """Unset precision, batch size and readers are chosen for the device: on a CPU fp32,
    CPU_BATCH views per batch and one reader per core but one."""
    config = embed_config(tiny_data, tiny_checkpoint, tmp_path / "c.h5", batch_size=None)
    config.workers = None
    result = run_embed(config)
    assert result.batch_size == batch_encoder.CPU_BATCH
    assert result.workers == readers.default_workers() >= 1
    with Cache.open(result.cache) as cache:
        assert json.loads(cache.file.attrs["config"])["identity"]["precision"] == "fp32"
    assert result.warmup_views == batch_encoder.CPU_BATCH  # the first batch written
    assert 0 < result.warmup_seconds < result.seconds
    assert 0 < result.finalize_seconds < result.seconds - result.warmup_seconds
    steady = (result.embedded - result.warmup_views) / (result.seconds - result.warmup_seconds)
    assert result.steady_views_per_second == pytest.approx(steady)


@pytest.mark.parametrize("change", [{"seed": 1}, {"augment": 2}, {"precision": "bf16"}])
def test_other_settings_never_reuse_a_cache(tiny_cache, tiny_data, tiny_checkpoint, change):
    key = next(iter(change))
    with pytest.raises(CacheError, match=f"{key}: cache has"):
        run_embed(embed_config(tiny_data, tiny_checkpoint, tiny_cache, **change))


def test_the_refusal_of_another_cache_fits_on_a_screen(tiny_cache, tiny_data, tiny_checkpoint):
    """What differs, in a few lines: not the thousands of views nor the recipe in full."""
    with pytest.raises(CacheError) as refused:
        run_embed(embed_config(tiny_data, tiny_checkpoint, tiny_cache, seed=1, augment=2))
    message = str(refused.value)
    assert len(message.splitlines()) <= 8 and len(message) < 1500
    assert "augment: cache has 1, asked 2" in message and "views: cache has" in message


def test_the_cache_holds_every_usable_pair_when_images_share_a_stem(
    tiny_data, tiny_checkpoint, tmp_path
):
    """Rows 0.jpg,0.png and 0.png,3.png: two images of stem 0, both in the cache."""
    data_dir = write_dataset(tmp_path / "data", [(60, 80), (70, 50), (40, 40), (50, 90)])
    (data_dir / "Image" / "3.jpg").rename(data_dir / "Image" / "0.png")  # a JPEG named .png
    rows = ["Image,Mask", "0.jpg,0.png", "0.png,3.png", "1.jpg,1.png", "2.jpg,2.png"]
    (data_dir / "metadata.csv").write_text("\n".join(rows) + "\n")
    result = run_embed(embed_config(data_dir, tiny_checkpoint, tmp_path / "c.h5", augment=0))
    with Cache.open(result.cache) as cache:
        assert sorted(cache.column("image_id")) == ["0.jpg", "0.png", "1", "2"]
        assert sorted(cache.column("mask_file")) == [
            str(data_dir / "Mask" / name) for name in ("0.png", "1.png", "2.png", "3.png")
        ]


def test_a_pair_whose_file_name_is_not_utf8_is_left_out_not_the_whole_run(
    tiny_checkpoint, tmp_path
):
    data_dir = write_dataset(tmp_path / "data", [(60, 80), (70, 50), (40, 40)])
    (data_dir / "metadata.csv").unlink()  # paired by stem: any name the folder holds
    for folder, suffix in (("Image", b".jpg"), ("Mask", b".png")):
        old = os.path.join(os.fsencode(data_dir / folder), b"2" + suffix)
        os.rename(old, os.path.join(os.fsencode(data_dir / folder), b"caf\xe9" + suffix))
    result = run_embed(embed_config(data_dir, tiny_checkpoint, tmp_path / "c.h5", augment=0))
    assert result.excluded == {"caf\udce9": ["undecodable_name"]} and result.views == 2
    assert verify(result.cache).ok


def test_an_image_outside_the_data_folder_is_embedded_only_when_allowed(tiny_checkpoint, tmp_path):
    data_dir = write_dataset(tmp_path / "data", [(60, 80), (70, 50), (40, 40)])
    (data_dir / "Image" / "2.jpg").rename(tmp_path / "elsewhere.jpg")
    rows = ["Image,Mask", "0.jpg,0.png", "1.jpg,1.png", "../../elsewhere.jpg,2.png"]
    (data_dir / "metadata.csv").write_text("\n".join(rows) + "\n")
    config = embed_config(data_dir, tiny_checkpoint, tmp_path / "c.h5", augment=0)
    with pytest.raises(ValueError, match="line 4 lists the image ../../elsewhere.jpg, outside"):
        run_embed(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "elsewhere.jpg"]
    result = run_embed(replace(config, allow_outside_paths=True))
    with Cache.open(result.cache) as cache:
        assert str(data_dir / "Image" / "../../elsewhere.jpg") in cache.column("image_file")


def test_an_image_over_the_pixel_limit_is_left_out_of_the_cache(tiny_checkpoint, tmp_path):
    data_dir = write_dataset(tmp_path / "data", [(60, 80), (70, 50), (120, 100)])
    config = embed_config(data_dir, tiny_checkpoint, tmp_path / "c.h5", augment=0)
    result = run_embed(replace(config, max_pixels=6000))
    assert result.excluded == {"2": ["unreadable_image", "unreadable_mask"]}
    assert result.views == 2 and verify(result.cache).ok


def test_other_checkpoint_is_refused_then_overwrite(tiny_data, tiny_checkpoint, tmp_path):
    cache = tmp_path / "c.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache, limit=3))
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save({k: v + 1 for k, v in torch.load(tiny_checkpoint).items()}, other)
    with pytest.raises(CacheError, match="checkpoint_sha256"):
        run_embed(embed_config(tiny_data, other, cache, limit=3))
    run_embed(embed_config(tiny_data, other, cache, limit=3, overwrite=True))
    with Cache.open(cache) as opened:
        assert opened.file.attrs["checkpoint_sha256"] != "" and verify(cache).ok


def test_overwrite_keeps_the_old_cache_until_the_new_one_is_whole_and_resumes(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    """`embed --overwrite` stopped part way leaves the old cache whole and in place; the
    resume hint's command, --overwrite in it, goes on from the new run's parts."""
    cache = tmp_path / "c.h5"
    run_embed(embed_config(tiny_data, tiny_checkpoint, cache, limit=3))
    with Cache.open(cache) as opened:
        old = opened.fingerprint
    real_stream = batch_encoder.BatchEncoder.stream

    def stopped_after_two_batches(self, batches, memory=None):
        for count, encoded in enumerate(real_stream(self, batches, memory), 1):
            yield encoded
            if count == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(batch_encoder.BatchEncoder, "stream", stopped_after_two_batches)
    new = embed_config(
        tiny_data, tiny_checkpoint, cache, limit=3, seed=1, batch_size=1, overwrite=True
    )
    with pytest.raises(KeyboardInterrupt):
        run_embed(new)
    with Cache.open(cache) as opened:
        assert opened.fingerprint == old and verify(cache).ok
    kept = len(list((tmp_path / "c.h5.parts").glob("part-*.h5")))
    assert kept == 2
    monkeypatch.undo()
    result = run_embed(new)
    assert result.embedded == result.views - kept  # the parts were not thrown away
    with Cache.open(cache) as opened:
        assert opened.fingerprint != old and verify(cache).ok


def test_killed_embed_resumes_to_an_identical_cache(tiny_data, tiny_checkpoint, tmp_path):
    reference = tmp_path / "reference.h5"
    subprocess.run(
        embed_command(tiny_data, tiny_checkpoint, reference), check=True, capture_output=True
    )
    cache = tmp_path / "resumed.h5"
    parts = tmp_path / "resumed.h5.parts"
    kill_after_parts(embed_command(tiny_data, tiny_checkpoint, cache), parts, 3)
    assert not cache.exists()
    with pytest.raises(CacheError, match="Run the same command again"):
        Cache.open(cache)
    done = len(list(parts.glob("part-*.h5")))
    kill_after_parts(embed_command(tiny_data, tiny_checkpoint, cache), parts, done + 4)
    done = len(list(parts.glob("part-*.h5")))
    finish = subprocess.run(
        embed_command(tiny_data, tiny_checkpoint, cache), check=True, capture_output=True, text=True
    )
    total = len(Cache.open(reference))
    assert f"embedded {total - done} views" in finish.stdout  # finished views not redone
    resumed = f"resuming: {done} of {total} views were encoded by an earlier run; "
    assert resumed + f"{total - done} to go" in finish.stderr, finish.stderr
    assert "waited" not in finish.stderr  # where the time went: --verbose only
    assert not parts.exists()
    assert verify(cache).ok
    assert_same_cache(reference, cache)


def test_second_writer_is_locked_out(tiny_data, tiny_checkpoint, tmp_path):
    from floodcache.cache.writer import CacheWriter

    cache = tmp_path / "locked.h5"
    with CacheWriter(cache, {"model_type": "x"}, {"identity": {"model_type": "x"}}):
        with pytest.raises(CacheError, match="another embed is writing"):
            run_embed(embed_config(tiny_data, tiny_checkpoint, cache))


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real data set not present")
def test_embed_real_images(tiny_checkpoint, tmp_path):
    cache = tmp_path / "real.h5"
    result = run_embed(embed_config(REAL_DATA, tiny_checkpoint, cache, limit=4, augment=1))
    report = verify(cache)
    assert report.ok, report.problems
    assert result.views == sum(views for _, views in report.counts.values())
    with Cache.open(cache) as opened:
        ids = set(opened.column("image_id"))
        assert not ids & {"1024", "1084", "2021", "3074"}  # listed, but their images are missing
        for row in range(len(opened)):
            height, width = opened.column("original_size")[row]
            assert opened.full_mask(row).shape == (height, width)
            assert 0.0 <= opened.column("water_fraction")[row] <= 1.0


def test_writer_processes_give_the_cache_of_writing_in_line(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    """Parts written by the background processes, slowly and out of step with encoding, and
    added to the cache as they come, make the very cache that writing each part before
    encoding the next one, and assembling them all at the end, made."""
    config = embed_config(tiny_data, tiny_checkpoint, tmp_path / "background.h5", batch_size=2)
    real_write_part = cache_writer.write_part

    def slow_write_part(*args):
        time.sleep(0.1)  # several batches encode while one is written
        return real_write_part(*args)

    monkeypatch.setattr(cache_writer, "write_part", slow_write_part)
    background = run_embed(config)
    monkeypatch.setattr(cache_writer, "write_part", real_write_part)

    class WriteInLine:  # embed's writing before the writer processes: parts only
        processes = 0

        def __init__(self, writer, written, assembler, pin):
            self.writer, self.written = writer, written
            self.busy = self.waited = 0.0

        def submit(self, records, last=False):
            self.writer.write_part(records, part_name(records[0]))
            self.written(len(records), time.perf_counter())

        def __enter__(self):
            return self

        def __exit__(self, *error):
            pass

    monkeypatch.setattr(encode, "PartWriter", WriteInLine)
    in_line = run_embed(replace(config, cache=tmp_path / "in_line.h5"))
    assert background.embedded == in_line.embedded == background.views
    with Cache.open(background.cache) as a, Cache.open(in_line.cache) as b:
        assert a.fingerprint == b.fingerprint
    assert_same_cache(background.cache, in_line.cache)


def test_device_resize_makes_the_same_cache_but_for_the_resized_pixels(
    tiny_data, tiny_checkpoint, tmp_path
):
    """--resize torch: every field but the embeddings and low-res targets is the readers'
    (pil) cache's; those two follow the device's resize; the identity says which resize."""
    caches = {}
    for resize in ["pil", "torch"]:
        caches[resize] = tmp_path / f"{resize}.h5"
        config = embed_config(tiny_data, tiny_checkpoint, caches[resize], limit=3, resize=resize)
        run_embed(config)
        assert verify(caches[resize]).ok
    with Cache.open(caches["pil"]) as pil, Cache.open(caches["torch"]) as on_device:
        identity = json.loads(on_device.file.attrs["config"])["identity"]
        assert identity["resize_method"] == RESIZE_METHODS["torch"]
        for name in ["image_id", "view", "split", "input_size", "water_fraction"]:
            assert np.array_equal(pil.column(name), on_device.column(name)), name
        pngs = zip(pil.file["mask_png"][:], on_device.file["mask_png"][:], strict=True)
        assert all(np.array_equal(a, b) for a, b in pngs)
        rows = np.arange(len(pil))
        ours, theirs = on_device.read("lowres_mask", rows), pil.read("lowres_mask", rows)
        assert ours.shape == theirs.shape and (ours != theirs).mean() < 0.02
        ours, theirs = (c.embeddings(rows).astype(np.float32) for c in (on_device, pil))
        assert not np.array_equal(ours, theirs)  # other pixels, other embeddings ...
        assert relative_error(ours, theirs) < 0.1  # ... close ones
    with pytest.raises(CacheError, match="resize_method"):
        run_embed(embed_config(tiny_data, tiny_checkpoint, caches["torch"], limit=3))


def test_georeferenced_chips_embed_as_the_pixels_their_reading_gives(tiny_checkpoint, tmp_path):
    """uint16 chips of 4 bands, read with --bands 3,2,1 and the percentile stretch: the same
    cache as 8-bit PNGs of those pixels; another reading is another cache."""
    images, masks = write_chips(tmp_path / "chips")
    reading = RasterReading(bands=(3, 2, 1))
    photos = tmp_path / "photos"
    for chip in sorted(images.iterdir()):
        pixels, _ = decode.read_image(chip, reading=reading)
        mask, _ = decode.read_mask(masks / chip.name)
        save(photos / "images" / f"{chip.stem}.png", pixels, "PNG")
        save(photos / "masks" / f"{chip.stem}.png", mask * 255, "PNG")
    settings = dict(augment=0)
    chips = embed_config(
        None,
        tiny_checkpoint,
        tmp_path / "chips.h5",
        images=images,
        masks=masks,
        raster=reading,
        **settings,
    )
    run_embed(chips)
    png = embed_config(
        None,
        tiny_checkpoint,
        tmp_path / "png.h5",
        images=photos / "images",
        masks=photos / "masks",
        **settings,
    )
    run_embed(png)
    with Cache.open(chips.cache) as a, Cache.open(png.cache) as b:
        assert np.array_equal(a.file["embeddings"][:], b.file["embeddings"][:])
        for field in ("lowres_mask", "image_id", "split"):
            assert np.array_equal(a.column(field), b.column(field)), field
    with pytest.raises(CacheError, match="raster: cache has"):
        run_embed(replace(chips, raster=RasterReading(bands=(1, 2, 3))))


def test_a_pixel_limit_below_one_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--max-pixels must be at least 1, not 0"):
        embed_config(tmp_path, None, tmp_path / "c.h5", max_pixels=0)
