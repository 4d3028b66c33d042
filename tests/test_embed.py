"""`embed` end to end: the cache it writes, its equivalence to SamPredictor, crash and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import albumentations as A
import cv2
import h5py
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from floodcache import batch_encoder, cache_writer, data, embed, encoder, readers, views
from floodcache.cache import Cache, CacheError, verify, view_digest
from floodcache.choices import RESIZE_METHODS
from floodcache.embed import run_embed
from floodcache.encoder import load_sam, relative_error
from floodcache.part_writer import part_name
from tests.conftest import PROJECT, REAL_DATA, embed_config, write_dataset


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
            pair = data.Pair(
                str(cache.column("image_id")[row]),
                Path(cache.column("image_file")[row]),
                Path(cache.column("mask_file")[row]),
            )
            image, mask = data.load_pair(pair)
            assert np.array_equal(cache.full_mask(row), mask)
            assert tuple(cache.column("original_size")[row]) == mask.shape
            predictor.set_image(image)
            assert relative_error(cache.embeddings([row])[0], predictor.features[0]) < 1e-3


def test_vit_b_cached_embedding_equals_sam_predictor(vit_b_checkpoint, tmp_path):
    """The issue's acceptance test: real ViT-B architecture, fp32, relative error < 1e-3."""
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
    image, _ = data.load_pair(data.find_pairs(data_dir)[0][0])
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
        if isinstance(x, str) and key == "attr:config":
            continue  # records the command line, which names the cache path
        if isinstance(x, np.ndarray) and x.dtype == object:
            assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True)), key
        else:
            assert np.array_equal(x, y), key


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
    assert not parts.exists()
    assert verify(cache).ok
    assert_same_cache(reference, cache)


def test_second_writer_is_locked_out(tiny_data, tiny_checkpoint, tmp_path):
    from floodcache.cache_writer import CacheWriter

    cache = tmp_path / "locked.h5"
    with CacheWriter(cache, {"model_type": "x"}, {"identity": {"model_type": "x"}}):
        with pytest.raises(CacheError, match="another process is writing"):
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

    monkeypatch.setattr(embed, "PartWriter", WriteInLine)
    in_line = run_embed(replace(config, cache=tmp_path / "in_line.h5"))
    assert background.embedded == in_line.embedded == background.views
    with Cache.open(background.cache) as a, Cache.open(in_line.cache) as b:
        assert a.fingerprint == b.fingerprint
    assert_same_cache(background.cache, in_line.cache)


def digest_as_written_before(record: dict) -> str:
    """view_digest as caches written so far computed it, with copies through .tobytes()."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(record["embeddings"], np.float16).tobytes())
    digest.update(np.ascontiguousarray(record["lowres_mask"], np.uint8).tobytes())
    digest.update(np.asarray(record["mask_png"], np.uint8).tobytes())
    return digest.hexdigest()


def test_view_digest_is_unchanged_for_existing_caches(tiny_cache):
    rng = np.random.default_rng(3)
    embedding = rng.standard_normal((64, 256, 64)).astype(np.float32)
    records = [
        {
            "embeddings": rng.standard_normal((256, 64, 64)).astype(np.float16),
            "lowres_mask": rng.integers(0, 2, (256, 256), np.uint8),
            "mask_png": rng.integers(0, 256, 777, np.uint8),
        },
        {  # float32, big-endian, transposed, strided: converted or copied as before
            "embeddings": embedding.transpose(1, 0, 2),
            "lowres_mask": rng.integers(0, 2, (256, 512), np.uint8)[:, ::2],
            "mask_png": rng.integers(0, 256, 300).astype(">i4")[::3],
        },
    ]
    for record in records:
        assert view_digest(record) == digest_as_written_before(record)
    with Cache.open(tiny_cache) as cache:
        stored = cache.column("view_sha256")
        for row in range(3):
            record = {n: cache.file[n][row] for n in ("embeddings", "lowres_mask", "mask_png")}
            assert view_digest(record) == digest_as_written_before(record) == stored[row]


def test_batch_to_tensor_is_sam_preprocess_whatever_the_staging_held(tiny_checkpoint, monkeypatch):
    """The staging buffer is not zeroed: padding full of stale bytes must still come out 0."""
    sam = load_sam("vit_tiny", tiny_checkpoint)
    rng = np.random.default_rng(4)
    resized = [
        encoder.resize_to_input(rng.integers(0, 256, shape, np.uint8))
        for shape in [(120, 200, 3), (300, 100, 3), (64, 64, 3)]
    ]
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(255))
    batch = encoder.batch_to_tensor(sam, resized, torch.device("cpu"))
    for image, ours in zip(resized, batch, strict=True):
        pixels = torch.as_tensor(image).permute(2, 0, 1).contiguous()[None]
        assert torch.equal(ours, sam.preprocess(pixels)[0])


def view_dataset(data_dir: Path, augment: int) -> readers.ViewDataset:
    config = embed_config(data_dir, None, Path("unused.h5"), augment=augment)
    plan, pairs, _ = embed.plan_embed(config)
    return readers.ViewDataset(plan, pairs, config)


def assert_same_view(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_readers_decode_an_image_once_for_its_views(tiny_data, monkeypatch):
    """Views read in plan order from one decoded image equal views each read from scratch."""
    real_load_pair = data.load_pair
    decoded = []

    def counted_load_pair(pair, *args):
        decoded.append(pair.image_id)
        return real_load_pair(pair, *args)

    monkeypatch.setattr(data, "load_pair", counted_load_pair)
    dataset = view_dataset(tiny_data, augment=3)
    in_order = [dataset[i] for i in range(len(dataset))]
    assert sorted(decoded) == sorted(dataset.pairs)  # once per image
    assert len(dataset) > len(dataset.pairs)
    for index in reversed(range(len(dataset))):  # never the image decoded just before
        assert_same_view(in_order[index], view_dataset(tiny_data, augment=3)[index])


def test_augmentation_never_writes_into_the_shared_image(monkeypatch):
    """The readers' decoded image and its views' base (`views.view_base`) are shared by its
    views, read-only: every transform of the recipe, each forced on, must leave them as they
    were."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (90, 120, 3), np.uint8)
    mask = (rng.random((90, 120)) > 0.5).astype(np.uint8)
    base = views.view_base(image, mask)
    shared = (image, mask, *base)
    before = [array.copy() for array in shared]
    for array in shared:
        array.flags.writeable = False  # a write raises instead
    recipe = views.augmentation().transforms
    pieces = [p for t in recipe for p in (t.transforms if isinstance(t, A.OneOf) else [t])]
    for piece in pieces:
        piece.p = 1.0
        recipe = A.Compose([piece])
        monkeypatch.setattr(views, "_shared_augmentation", lambda recipe=recipe: recipe)
        for view in (1, 2, 3):
            out_image, out_mask = views.make_view(image, mask, 0, "0", view, base)
            assert out_image.shape == base[0].shape and out_mask.shape == base[1].shape
    assert len(pieces) >= 8
    assert all(np.array_equal(a, b) for a, b in zip(shared, before, strict=True))


def test_reader_times_since_the_first_batch():
    """embed logs the readers' work after its first batch only: the time before it (model
    load, compiling) would make busy readers look idle."""
    then, now = readers.ReaderTimes(wall=3.0, cpu=2.5), readers.ReaderTimes(wall=9.0, cpu=7.0)
    assert (now - then).line(4, 2.0) == (
        "the 4 readers were at work 75% of the time, on a core 75% of that"
    )
    assert now.line(1, 12.0).startswith("the reader was at work 75% of the time")
    assert now.line(0, 2.0) == "views read in this process"


def test_wait_clock_adds_up_the_waits_and_passes_every_item():
    def slow():
        for item in range(3):
            time.sleep(0.05)
            yield item

    clock = embed.WaitClock(slow())
    assert list(clock) == [0, 1, 2]
    assert 0.15 <= clock.waited < 1.0


@pytest.mark.parametrize("workers", [0, 2])
def test_read_batches_gives_back_each_batch_whole_and_in_order(tiny_data, workers):
    """Readers work image by image; the batches asked come back as asked (keys, order)."""
    config = embed_config(tiny_data, None, Path("unused.h5"), augment=2)
    plan, pairs, _ = embed.plan_embed(config)
    batches = embed.pending_batches(plan, {(plan[1].image_id, plan[1].view)}, 4)
    threads = cv2.getNumThreads()
    read = list(readers.read_batches(batches, pairs, config, workers))
    assert cv2.getNumThreads() == threads  # the readers' one thread is theirs alone
    assert [[(v["image_id"], v["view"]) for v in batch] for batch in read] == [
        [(key.image_id, key.view) for key in batch] for batch in batches
    ]
    assert any(len({key.image_id for key in batch}) > 1 for batch in batches)  # cut in units
    dataset = readers.ViewDataset(plan, pairs, config)
    by_key = {(key.image_id, key.view): dataset[index] for index, key in enumerate(plan)}
    for view in (view for batch in read for view in batch):
        assert_same_view(view, by_key[view["image_id"], view["view"]])  # pixels as read


def test_reader_processes_make_the_cache_of_reading_in_line(tiny_data, tiny_checkpoint, tmp_path):
    """Two reader processes handing pixels over in shared memory, writer processes and the
    assembler: the very cache that embed makes reading every view in its own process."""
    caches = []
    for workers in (0, 2):
        caches.append(tmp_path / f"workers{workers}.h5")
        config = embed_config(tiny_data, tiny_checkpoint, caches[-1], batch_size=3, augment=2)
        config.workers = workers
        assert run_embed(config).workers == workers
    assert_same_cache(*caches)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("resize", ["pil", "torch"])
def test_cuda_embed_from_page_locked_slots_gives_the_cache_of_reading_in_line(
    tiny_data, tiny_checkpoint, tmp_path, resize
):
    """On CUDA the pixels go to the GPU straight from the readers' page-locked slots and the
    embeddings come back straight into the writers' memory: the cache of reading in line
    (pinned staging), embeddings within the GPU's run-to-run noise."""
    caches = []
    for workers in (0, 2):
        caches.append(tmp_path / f"workers{workers}.h5")
        config = embed_config(tiny_data, tiny_checkpoint, caches[-1], batch_size=3, augment=2)
        config.workers, config.device, config.resize = workers, "cuda", resize
        run_embed(config)
    first, second = read_everything(caches[0]), read_everything(caches[1])
    assert first.keys() == second.keys()
    same = np.array_equal(first["embeddings"], second["embeddings"])
    for key in first:
        x, y = first[key], second[key]
        if key == "attr:config" or (not same and key in ("view_sha256", "attr:fingerprint")):
            continue  # the command line; digests of the embeddings
        if "embeddings" in key:
            assert np.abs(x.astype(np.float32) - y).max() <= 1e-3 * np.abs(x).max(), key
        elif isinstance(x, np.ndarray) and x.dtype == object:
            assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True)), key
        else:
            assert np.array_equal(x, y), key


def test_forked_readers_hand_pixels_over_in_shared_memory(tiny_data, monkeypatch):
    """Forked readers put the pixels in slots of memory shared with them, others send them
    through the pipe, as a view too big for its slot goes; the views are the same either way.
    Borrowed,
    a batch reads the slots in place (the low-res target excepted: the writer keeps it)."""
    config = embed_config(tiny_data, None, Path("unused.h5"), augment=1)
    plan, pairs, _ = embed.plan_embed(config)
    batches = embed.pending_batches(plan, set(), 3)
    read, borrowed = {}, {}
    for way, forked, slot in [("shm", True, None), ("pipe", False, None), ("big", True, 1000)]:
        monkeypatch.setattr(readers, "FORKED_READERS", forked)
        if slot:
            monkeypatch.setitem(readers.SLOT_BYTES, "pil", slot)
        read[way] = sum(readers.read_batches(batches, pairs, config, workers=1), [])
        first = next(readers.read_batches(batches, pairs, config, workers=1, borrow=True))
        borrowed[way] = first[0]
    for by_shm, by_pipe, too_big in zip(*read.values(), strict=True):
        assert_same_view(by_shm, by_pipe)
        assert_same_view(by_shm, too_big)
    assert isinstance(borrowed["shm"]["resized"].base, np.ndarray)  # in its slot
    assert borrowed["shm"]["lowres_mask"].base is None  # its own copy
    for way in ("pipe", "big"):
        assert not isinstance(borrowed[way]["resized"].base, np.ndarray)  # unpickled bytes


def test_readers_without_slots_read_a_bounded_number_of_views_ahead(tiny_data, monkeypatch):
    """Through pipes (readers not forked) nothing bounds the views read ahead but the count:
    at most AHEAD_PER_READER views per reader (plus the unit that crossed it) wait unread."""
    monkeypatch.setattr(readers, "FORKED_READERS", False)
    monkeypatch.setattr(readers, "AHEAD_PER_READER", 1)
    config = embed_config(tiny_data, None, Path("unused.h5"), augment=2)
    plan, pairs, _ = embed.plan_embed(config)
    batches = embed.pending_batches(plan, set(), 2)
    submitted = []
    real = readers.background_processes

    def counting(*args):
        pool = real(*args)
        submit = pool.submit
        pool.submit = lambda fn, unit, slots: submitted.append(len(unit)) or submit(fn, unit, slots)
        return pool

    monkeypatch.setattr(readers, "background_processes", counting)
    read = 0
    for batch in readers.read_batches(batches, pairs, config, workers=1):
        read += len(batch)
        assert sum(submitted) - read <= 1 + (config.augment + 1), (sum(submitted), read)
    assert read == len(plan) == sum(submitted)


def test_borrowed_pixels_stay_until_the_batch_after_next_is_asked_for(tiny_data, monkeypatch):
    """Slots are used again (few of them here): a borrowed batch's pixels hold until
    HELD_BATCHES more batches are asked for; without borrowing they are copies and last."""
    monkeypatch.setattr(readers, "AHEAD_PER_READER", 0)  # slots for the held batches alone
    config = embed_config(tiny_data, None, Path("unused.h5"), augment=2)
    plan, pairs, _ = embed.plan_embed(config)
    batches = embed.pending_batches(plan, set(), 2)
    assert len(batches) > 2 * (readers.HELD_BATCHES + 1)  # every slot gets used again
    dataset = readers.ViewDataset(plan, pairs, config)
    expected = [[dataset[plan.index(key)]["resized"] for key in batch] for batch in batches]
    for borrow in (True, False):
        kept: list[list[np.ndarray]] = []
        for batch in readers.read_batches(batches, pairs, config, workers=2, borrow=borrow):
            kept.append([view["resized"] for view in batch])
            valid = kept[-readers.HELD_BATCHES :] if borrow else kept
            start = len(kept) - len(valid)
            for got, want in zip(valid, expected[start:], strict=False):
                assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
        overwritten = not all(
            np.array_equal(g, w)
            for got, want in zip(kept, expected, strict=True)
            for g, w in zip(got, want, strict=True)
        )
        assert overwritten == borrow  # borrowed pixels are gone once their slots are reused


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
