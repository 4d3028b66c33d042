"""Faults: kills, Ctrl-C, locks, damaged caches, a full disk, bad files, torchrun ranks."""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from floodcache.cache import assembly
from floodcache.cache import writer as cache_writer
from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.embed import part_writer, readers
from floodcache.embed.part_writer import PARTS_IN_FLIGHT
from floodcache.embed.plan import plan_embed
from floodcache.embed.run import run_embed
from floodcache.sam import batch_encoder
from tests.helpers import (
    assert_same_cache,
    embed_command,
    embed_config,
    press_ctrl_c,
    start_interruptible,
    torchrun,
)

PARTS = "part-*.h5"


@pytest.fixture(scope="module")
def reference(tiny_data, tiny_checkpoint, tmp_path_factory) -> Path:
    """An uninterrupted single-process run of `embed_command`."""
    path = tmp_path_factory.mktemp("reference") / "reference.h5"
    subprocess.run(embed_command(tiny_data, tiny_checkpoint, path), check=True, capture_output=True)
    return path


def test_sigkill_at_random_moments_then_resume(tiny_data, tiny_checkpoint, reference, tmp_path):
    cache = tmp_path / "killed.h5"
    command = embed_command(tiny_data, tiny_checkpoint, cache)
    rng = random.Random(1234)
    for _ in range(4):  # killed during start-up, encoding, part writing or assembly
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 7.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert cache.exists() == verify_ok(cache)  # present means complete and sound
    subprocess.run(command, check=True, capture_output=True)
    assert verify(cache).ok
    assert_same_cache(reference, cache)


def verify_ok(path: Path) -> bool:
    try:
        return verify(path).ok
    except CacheError:
        return False


def test_ctrl_c_keeps_finished_work_and_says_how_to_resume(
    tiny_data, tiny_checkpoint, reference, tmp_path
):
    cache = tmp_path / "interrupted.h5"
    parts = tmp_path / "interrupted.h5.parts"
    command = embed_command(tiny_data, tiny_checkpoint, cache)
    process = start_interruptible(command)
    while len(list(parts.glob(PARTS))) < 3:
        assert process.poll() is None
        time.sleep(0.02)
    press_ctrl_c(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    kept = len(list(parts.glob(PARTS)))
    assert kept >= 3 and not cache.exists()
    finish = subprocess.run(command, check=True, capture_output=True, text=True)
    assert f"embedded {len(Cache.open(reference)) - kept} views" in finish.stdout
    assert_same_cache(reference, cache)


def test_sigterm_stops_embed_as_ctrl_c_does(tiny_data, tiny_checkpoint, tmp_path, monkeypatch):
    """`kill PID` (or a job scheduler's time limit) once two batches are encoded: status 143,
    the message of Ctrl-C, the finished parts kept and a rerun that goes on from them."""
    real_stream = batch_encoder.BatchEncoder.stream

    def terminated_after_two_batches(self, batches, memory=None):
        for count, encoded in enumerate(real_stream(self, batches, memory), 1):
            yield encoded
            if count == 2:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)  # the handler raises in here

    def unhandled(signum, frame):  # SIGTERM's default would end this test's process
        pytest.fail("embed left SIGTERM to its default: killed without a word")

    monkeypatch.setattr(batch_encoder.BatchEncoder, "stream", terminated_after_two_batches)
    previous = signal.signal(signal.SIGTERM, unhandled)
    cache = tmp_path / "terminated.h5"
    options = ["--data", tiny_data, "--checkpoint", tiny_checkpoint, "--model-type", "vit_tiny"]
    args = ["embed", *options, "--cache", cache, "--batch-size", "1", "--workers", "0"]
    try:
        result = CliRunner().invoke(cli.main, list(map(str, args)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "terminated: finished work is kept; run the same command again" in result.output
    kept = len(list((tmp_path / "terminated.h5.parts").glob(PARTS)))
    assert kept >= 2 and not cache.exists()
    monkeypatch.undo()
    result = CliRunner().invoke(cli.main, list(map(str, args)))
    assert result.exit_code == 0 and verify(cache).ok, result.output


def test_ctrl_c_with_reader_processes_stops_at_once(tiny_data, tiny_checkpoint, tmp_path):
    """Ctrl-C reaches the readers too (the whole process group): they leave it to embed,
    which stops them. When they died of it themselves, embed waited ~5 s for each."""
    cache = tmp_path / "interrupted.h5"
    parts = tmp_path / "interrupted.h5.parts"
    command = embed_command(tiny_data, tiny_checkpoint, cache)
    command[command.index("--workers") + 1] = "2"
    process = start_interruptible(command)
    while len(list(parts.glob(PARTS))) < 3:
        assert process.poll() is None
        time.sleep(0.02)
    pressed = time.monotonic()
    press_ctrl_c(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert time.monotonic() - pressed < 5  # 1-2 s here; 11 s with 2 readers hit by it
    assert len(list(parts.glob(PARTS))) >= 3 and not list(parts.glob("*.tmp"))


def test_a_killed_reader_stops_embed_with_what_to_do_and_keeps_the_parts(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    """A reader process killed (the OOM killer, say) once parts are written: embed stops
    with an error naming the cause and the fix, keeps the parts, and the same run then
    finishes the very cache a clean run makes."""
    config = embed_config(tiny_data, tiny_checkpoint, tmp_path / "killed.h5", batch_size=2)
    config.workers = 2
    plan, _, _ = plan_embed(config)
    victim, parts = plan[-1].image_id, tmp_path / "killed.h5.parts"
    real = readers.ViewDataset.__getitem__

    def dying(self, index):
        if self.views[index].image_id == victim:  # in a reader: die once a part is written
            deadline = time.monotonic() + 30
            while not list(parts.glob(PARTS)) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, index)

    monkeypatch.setattr(readers.ViewDataset, "__getitem__", dying)
    with pytest.raises(readers.ReaderDied, match="run the same command again"):
        run_embed(config)
    kept = len(list(parts.glob(PARTS)))
    assert kept >= 1 and not config.cache.exists() and not list(parts.glob("*.tmp"))
    monkeypatch.setattr(readers.ViewDataset, "__getitem__", real)
    assert run_embed(config).embedded < len(plan)  # went on from the parts
    clean = replace(config, cache=tmp_path / "clean.h5")
    run_embed(clean)
    assert_same_cache(clean.cache, config.cache)


def test_two_embed_processes_on_one_cache(tiny_data, tiny_checkpoint, tmp_path):
    """While one process holds the cache (this test, through CacheWriter), another embed stops."""
    from floodcache.cache.writer import CacheWriter

    cache = tmp_path / "shared.h5"
    identity = {"model_type": "vit_tiny"}
    with CacheWriter(cache, identity, {"identity": identity}):
        second = subprocess.run(
            embed_command(tiny_data, tiny_checkpoint, cache), capture_output=True, text=True
        )
    assert second.returncode == 1
    assert f"another embed is writing {cache}: process {os.getpid()} is running" in second.stderr
    assert not cache.exists()


def test_disk_full_keeps_the_finished_parts(tiny_data, tiny_checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "full.h5"
    real_file = cache_writer.h5py.File
    parts_begun = multiprocessing.Value("i", 0)  # counted across the writer processes

    def failing_file(name, mode="r", *args, **kwargs):
        if mode == "w" and Path(name).parent.name == "full.h5.parts":
            with parts_begun.get_lock():
                parts_begun.value += 1
                if parts_begun.value > 2:
                    raise OSError(errno.ENOSPC, "No space left on device", str(name))
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(cache_writer.h5py, "File", failing_file)
    with pytest.raises(CacheError, match="free some space and rerun the same command"):
        run_embed(embed_config(tiny_data, tiny_checkpoint, cache, batch_size=2))
    parts = list((tmp_path / "full.h5.parts").glob(PARTS))
    assert len(parts) == 2 and not cache.exists()
    assert not list((tmp_path / "full.h5.parts").glob("*.tmp"))
    assert not cache.with_name("full.h5.tmp").exists()  # the assembly begun is removed
    monkeypatch.setattr(cache_writer.h5py, "File", real_file)
    result = run_embed(embed_config(tiny_data, tiny_checkpoint, cache, batch_size=2))
    assert result.embedded == result.views - 4 and verify(cache).ok


def test_disk_full_while_assembling(tiny_data, tiny_checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "full.h5"
    real_complete = assembly.Assembly._complete

    def full_disk(self, *args):
        real_complete(self, *args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(assembly.Assembly, "_complete", full_disk)
    with pytest.raises(CacheError, match="finished parts .* are kept"):
        run_embed(embed_config(tiny_data, tiny_checkpoint, cache))
    assert not cache.exists() and not cache.with_name("full.h5.tmp").exists()
    monkeypatch.setattr(assembly.Assembly, "_complete", real_complete)
    result = run_embed(embed_config(tiny_data, tiny_checkpoint, cache))
    assert result.embedded == 0 and verify(cache).ok  # every view came from the kept parts


def test_stopped_after_the_last_part_a_rerun_with_readers_finishes(
    tiny_data, tiny_checkpoint, tiny_cache, tmp_path, monkeypatch
):
    """Killed once every view is in a part but before the cache is in place (or a full disk
    while assembling): the rerun has nothing to encode, and finishes the cache from the parts
    with reader processes as without them."""
    cache = tmp_path / "stopped.h5"
    config = embed_config(tiny_data, tiny_checkpoint, cache)

    def killed_before_assembling(self, *args):
        raise KeyboardInterrupt  # as a kill -9 right after the last part is written

    monkeypatch.setattr(part_writer.Assembler, "finish", killed_before_assembling)
    with pytest.raises(KeyboardInterrupt):
        run_embed(config)
    assert not cache.exists() and list((tmp_path / "stopped.h5.parts").glob(PARTS))
    monkeypatch.undo()
    result = run_embed(replace(config, workers=2))
    assert result.embedded == 0 and verify(cache).ok
    assert_same_cache(tiny_cache, cache)  # an uninterrupted run's, with the same settings


def test_bad_files_in_the_middle_are_reported_and_skipped(
    tiny_data, tiny_checkpoint, tmp_path, caplog
):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_data, data_dir)
    good = (data_dir / "Image" / "0.jpg").read_bytes()
    (data_dir / "Image" / "2.jpg").write_bytes(good[: len(good) // 3])  # truncated JPEG
    (data_dir / "Mask" / "4.png").write_bytes(b"")  # zero-byte PNG
    (data_dir / "Image" / "5.jpg").write_text("not a picture at all\n")  # text named .jpg
    cache = tmp_path / "bad.h5"
    result = run_embed(embed_config(data_dir, tiny_checkpoint, cache, augment=0))
    assert set(result.excluded) == {"2", "4", "5"}
    assert result.excluded["4"] == ["unreadable_mask"]
    assert "excluding 3 unusable pairs" in caplog.text
    with Cache.open(cache) as opened:
        assert set(opened.column("image_id")) == {"0", "1", "3", "6"}
    assert verify(cache).ok


def rank_pids(cache: Path, rank: int) -> list[int]:
    """Processes whose command line names `cache` and whose environment says RANK=rank."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(cache).encode() in cmdline and f"RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_torchrun_two_processes_give_the_single_process_cache(
    tiny_data, tiny_checkpoint, reference, tmp_path
):
    cache = tmp_path / "ranks.h5"
    parts = tmp_path / "ranks.h5.parts"
    command = torchrun(embed_command(tiny_data, tiny_checkpoint, cache), 29611)
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list(parts.glob(PARTS))) < 4:
        assert launcher.poll() is None, "torchrun finished before a rank could be killed"
        time.sleep(0.02)
    for pid in rank_pids(cache, 1):  # one rank crashes; torchrun stops the other
        os.kill(pid, signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0
    assert not cache.exists()
    kept = len(list(parts.glob(PARTS)))
    resumed = subprocess.run(
        torchrun(embed_command(tiny_data, tiny_checkpoint, cache), 29612),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert kept >= 4 and verify(cache).ok
    assert_same_cache(reference, cache)
    with Cache.open(cache) as opened:
        assert np.array_equal(
            opened.column("view_sha256"), Cache.open(reference).column("view_sha256")
        )


def test_failed_write_in_a_writer_process_stops_embed_soon(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    """The second part's write fails in a writer process: embed stops within the batches
    already handed over, with the CacheError naming the fix, and keeps the first part."""
    cache = tmp_path / "full.h5"
    real_write_rows = cache_writer._write_rows
    writes = multiprocessing.Value("i", 0)  # counted across the writer processes
    embed_process = os.getpid()

    def full_on_second_part(group, records):
        assert os.getpid() != embed_process, "a part was written by embed's own process"
        with writes.get_lock():
            writes.value += 1
            second = writes.value == 2
        if second:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_rows(group, records)

    monkeypatch.setattr(cache_writer, "_write_rows", full_on_second_part)
    config = embed_config(tiny_data, tiny_checkpoint, cache, batch_size=1)
    with pytest.raises(CacheError, match="free some space and rerun the same command"):
        run_embed(config)
    plan = plan_embed(config)[0]
    assert writes.value <= 2 + PARTS_IN_FLIGHT < len(plan)  # stopped soon, not at the end
    parts = tmp_path / "full.h5.parts"
    first, second = (parts / f"part-{key.image_id}-{key.view:04d}.h5" for key in plan[:2])
    assert first.exists() and not second.exists()
    assert not list(parts.glob("*.tmp")) and not cache.exists()
    assert not multiprocessing.active_children()  # the writers are gone
    monkeypatch.setattr(cache_writer, "_write_rows", real_write_rows)
    kept = len(list(parts.glob(PARTS)))
    result = run_embed(config)
    assert result.embedded == result.views - kept and verify(cache).ok


def test_interrupt_waits_for_the_parts_handed_over(
    tiny_data, tiny_checkpoint, tmp_path, monkeypatch
):
    """Ctrl-C while parts are still being written: they are all on disk, whole, when the
    KeyboardInterrupt reaches the caller."""
    real_write_part = cache_writer.write_part
    real_stream = batch_encoder.BatchEncoder.stream

    def slow_write_part(*args):
        time.sleep(0.3)
        return real_write_part(*args)

    def interrupted_stream(self, batches, memory=None):
        for count, encoded in enumerate(real_stream(self, batches, memory), 1):
            yield encoded
            if count == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(cache_writer, "write_part", slow_write_part)
    monkeypatch.setattr(batch_encoder.BatchEncoder, "stream", interrupted_stream)
    cache = tmp_path / "interrupted.h5"
    with pytest.raises(KeyboardInterrupt):
        run_embed(embed_config(tiny_data, tiny_checkpoint, cache, batch_size=1))
    parts = tmp_path / "interrupted.h5.parts"
    assert len(list(parts.glob(PARTS))) == 3 and not list(parts.glob("*.tmp"))
    assert not cache.with_name("interrupted.h5.tmp").exists()  # the assembly begun is gone
