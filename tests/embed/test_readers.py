"""embed's readers: views read once per image, in shared memory slots, in order, bounded."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest

from floodcache.data import pairs, views
from floodcache.embed import plan as embed_plan
from floodcache.embed import readers, slots
from floodcache.embed.run import run_embed
from tests.helpers import assert_same_cache, embed_config, read_everything


def view_dataset(data_dir: Path, augment: int) -> readers.ViewDataset:
    config = embed_config(data_dir, None, Path("unused.h5"), augment=augment)
    plan, pairs, _ = embed_plan.plan_embed(config)
    return readers.ViewDataset(plan, pairs, config)


def assert_same_view(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_readers_decode_an_image_once_for_its_views(tiny_data, monkeypatch):
    """Views read in plan order from one decoded image equal views each read from scratch."""
    real_load_pair = pairs.load_pair
    decoded = []

    def counted_load_pair(pair, *args):
        decoded.append(pair.image_id)
        return real_load_pair(pair, *args)

    monkeypatch.setattr(readers, "load_pair", counted_load_pair)
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


@pytest.mark.parametrize("workers", [0, 2])
def test_read_batches_gives_back_each_batch_whole_and_in_order(tiny_data, workers):
    """Readers work image by image; the batches asked come back as asked (keys, order)."""
    config = embed_config(tiny_data, None, Path("unused.h5"), augment=2)
    plan, pairs, _ = embed_plan.plan_embed(config)
    batches = embed_plan.pending_batches(plan, {(plan[1].image_id, plan[1].view)}, 4)
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


def test_read_batches_of_nothing_starts_no_reader(tiny_data, monkeypatch):
    """A rerun whose every view is in a part already reads no batch, with readers or not."""
    monkeypatch.setattr(readers, "background_processes", None)  # starting one would fail
    config = embed_config(tiny_data, None, Path("unused.h5"))
    assert list(readers.read_batches([], {}, config, workers=2)) == []


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


@pytest.mark.cuda
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
    plan, pairs, _ = embed_plan.plan_embed(config)
    batches = embed_plan.pending_batches(plan, set(), 3)
    read, borrowed = {}, {}
    for way, forked, slot in [("shm", True, None), ("pipe", False, None), ("big", True, 1000)]:
        monkeypatch.setattr(readers, "FORKED_READERS", forked)
        if slot:
            monkeypatch.setitem(slots.SLOT_BYTES, "pil", slot)
        read[way] = sum(readers.read_batches(batches, pairs, config, workers=1), [])
        first = next(readers.read_batches(batches, pairs, config, 1, readers.Handover(borrow=True)))
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
    plan, pairs, _ = embed_plan.plan_embed(config)
    batches = embed_plan.pending_batches(plan, set(), 2)
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
    plan, pairs, _ = embed_plan.plan_embed(config)
    batches = embed_plan.pending_batches(plan, set(), 2)
    assert len(batches) > 2 * (readers.HELD_BATCHES + 1)  # every slot gets used again
    dataset = readers.ViewDataset(plan, pairs, config)
    expected = [[dataset[plan.index(key)]["resized"] for key in batch] for batch in batches]
    for borrow in (True, False):
        kept: list[list[np.ndarray]] = []
        for batch in readers.read_batches(batches, pairs, config, 2, readers.Handover(borrow)):
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
