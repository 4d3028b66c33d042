"""A finished cache's parts set aside at once and removed in the background."""

from __future__ import annotations

from floodcache.cache import removal
from floodcache.cache.assembly import assemble
from floodcache.cache.format import parts_folder
from floodcache.cache.writer import CacheWriter
from tests.helpers import IDENTITY, SAM_STATE, make_plan, make_records, write_cache


def test_parts_are_set_aside_at_once_and_removed_in_the_background(tmp_path):
    write_cache(tmp_path / "c.h5", make_plan(4))
    # out of the way as soon as the cache is in place
    assert not parts_folder(tmp_path / "c.h5").exists()
    removal.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.h5"]


def test_parts_left_set_aside_are_removed_by_the_next_run(tmp_path):
    """A machine stopped while the parts were removed: the next writer removes them."""
    left = parts_folder(tmp_path / "c.h5").with_name("c.h5.parts.removing-1-2")
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "part-0.h5").write_bytes(b"\0" * 1000)
    assert removal.removals_pending(tmp_path / "c.h5") == [left]
    CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}).close()
    removal.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert not left.exists()


def test_parts_left_beside_a_complete_cache_are_removed(tmp_path):
    """Stopped after the cache was in place, before its parts were set aside."""
    plan = make_plan(2)
    with CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}) as writer:
        writer.write_part(make_records(plan), "0")
        parts = sorted(writer.parts.iterdir())
        kept = {path.name: path.read_bytes() for path in parts}
        assemble(writer, plan, SAM_STATE)
    writer.parts.mkdir()
    for name, content in kept.items():
        (writer.parts / name).write_bytes(content)
    with CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}) as again:
        assert again.already_complete and not again.parts.exists()
    removal.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.h5"]


def test_without_rm_the_parts_are_removed_in_this_process(tmp_path, monkeypatch):
    def no_rm(*args, **kwargs):
        raise FileNotFoundError("rm")

    monkeypatch.setattr(removal.subprocess, "Popen", no_rm)
    parts = tmp_path / "c.h5.parts"
    parts.mkdir()
    (parts / "part-0.h5").write_bytes(b"\0" * 1000)
    removal.set_aside_and_remove(parts)
    assert list(tmp_path.iterdir()) == []
