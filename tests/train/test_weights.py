"""The run folder: written whole or not at all, and read only as weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from click.testing import CliRunner

import cli
from floodcache.sam.checkpoints import CheckpointError
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from floodcache.train.runs import writing_run
from floodcache.train.weights import load_run, sam_with_decoder
from tests.helpers import full_disk_save, held_by_another_process


def test_a_full_disk_at_the_final_save_says_so_and_keeps_the_resumable_state(
    train_cache, tmp_path, monkeypatch
):
    real_save = torch.save
    monkeypatch.setattr(torch, "save", full_disk_save(real_save, only="decoder.pt"))
    out = tmp_path / "run"
    config = TrainConfig(train_cache, out, train_prompts="none", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"could not write .*run \(.*No space left.*with room"):
        run_train(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.partial"]  # nothing half
    monkeypatch.setattr(torch, "save", real_save)
    assert run_train(config).best_epoch == 1  # the rerun finishes from the saved epoch
    assert (out / "decoder.pt").is_file()


def test_a_second_train_into_the_same_out_stops_at_once_and_writes_nothing(train_cache, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(train_cache, out, train_prompts="none", epochs=1, progress=False)
    with held_by_another_process(lambda: writing_run(out)) as first:  # a train under way
        with pytest.raises(ValueError, match=rf"another train is writing .*process {first} is"):
            run_train(config)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["run.lock"]  # the first's
    assert run_train(config).best_epoch == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_a_full_disk_names_the_file_and_leaves_no_partial_one(train_cache, tmp_path, monkeypatch):
    """torch's own writer raised a RuntimeError that named nothing: a traceback."""
    monkeypatch.setattr(torch, "save", full_disk_save(torch.save))
    config = TrainConfig(train_cache, tmp_path / "run", train_prompts="none", epochs=1)
    config.progress = False
    with pytest.raises(ValueError, match=r"could not write .*run.partial/state.pt .*No space"):
        run_train(config)
    assert [path.name for path in tmp_path.rglob("*")] == ["run.partial"]


@pytest.mark.parametrize("content", [b"", {}, {"identity": None, "decoder": [1]}])
def test_a_broken_resumable_state_names_the_file_and_the_fix(train_cache, tmp_path, content):
    """An empty state.pt was a bare "Aborted!"; one of other keys, a KeyError."""
    state = tmp_path / "run.partial" / "state.pt"
    state.parent.mkdir()
    state.write_bytes(content) if isinstance(content, bytes) else torch.save(content, state)
    args = ["train", "--cache", str(train_cache), "--out", str(tmp_path / "run"), "--epochs", "1"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{state} is" in result.output and f"remove {state.parent}" in result.output


class NotWeights:
    """Pickled as a class: loading it would run code."""


def test_a_decoder_file_that_is_not_weights_is_named_and_never_unpickled(
    train_cache, finetuned_run, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    for content, says in [(NotWeights(), "Python objects other than tensors"), ([1, 2], "list")]:
        torch.save(content, run / "decoder.pt")
        with pytest.raises(CheckpointError, match=says) as refused:
            load_run(run)
        assert str(run / "decoder.pt") in str(refused.value)
        assert "weights_only" not in str(refused.value)
    assert loads and all(k.get("weights_only") is True for k in loads)
    args = ["evaluate", "--cache", str(train_cache), "--decoder", str(run), "--split", "val"]
    result = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "evaluation")])
    assert result.exit_code == 1 and str(run / "decoder.pt") in result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback


@pytest.mark.parametrize("what", ["the cache itself", "a folder of photos"])
def test_an_out_that_is_not_a_run_folder_is_never_replaced(train_cache, tmp_path, what):
    """`--out` the cache, or a folder of one's own: the run took its place, and deleted it."""
    if what == "the cache itself":
        out = tmp_path / "cache.h5"
        shutil.copy(train_cache, out)
    else:
        out = tmp_path / "photos"
        out.mkdir()
        (out / "flood.jpg").write_bytes(b"a photo")
    before = sorted(tmp_path.rglob("*"))
    config = TrainConfig(out if what == "the cache itself" else train_cache, out, epochs=1)
    config.progress, config.overwrite = False, True
    with pytest.raises(FileExistsError, match=f"{out} exists and is not a run folder"):
        run_train(config)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_decoder_with_weights_that_are_not_finite_is_refused_by_every_user(
    train_cache, tiny_checkpoint, finetuned_run, tmp_path
):
    """A diverged decoder (NaN weights) was evaluated, exported and used by predict without
    a word ("predicted IoU nan")."""
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    state = torch.load(run / "decoder.pt", weights_only=True)
    state[next(iter(state))] = torch.full_like(state[next(iter(state))], float("nan"))
    torch.save(state, run / "decoder.pt")
    commands = {
        "evaluate": ["--cache", str(train_cache), "--split", "val", "--out", str(tmp_path / "e")],
        "export": ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "sam.pth")],
    }
    for command, args in commands.items():
        result = CliRunner().invoke(cli.main, [command, "--decoder", str(run), *args])
        assert result.exit_code == 1, (command, result.output)
        assert "not finite" in result.output and str(run / "decoder.pt") in result.output
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert not (tmp_path / "sam.pth").exists() and not (tmp_path / "e" / "metrics.csv").exists()
    with pytest.raises(CheckpointError, match="not finite .*train it again"):
        sam_with_decoder(tiny_checkpoint, run)  # what predict loads its decoder with


def _drop_a_weight(state: dict) -> dict:
    return {k: v for k, v in list(state.items())[1:]}


def _reshape_a_weight(state: dict) -> dict:
    name = next(iter(state))
    return state | {name: torch.zeros(3, 3)}


DAMAGES = {
    "a weight missing": ("decoder.pt", _drop_a_weight, "missing"),
    "a weight of another shape": ("decoder.pt", _reshape_a_weight, "wrong shape"),
    "a whole SAM": ("decoder.pt", "sam", "unexpected image_encoder"),
    "a record that is a list": ("config.json", "[1, 2]", "not a run's record"),
    "a record without model_type": ("config.json", '{"prompts": {}}', "not a run's record"),
    "a record that is not JSON": ("config.json", '{"model_type": ', "not valid JSON"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_folder_is_named_with_the_fix_not_a_traceback(
    tiny_checkpoint, finetuned_run, tmp_path, damage
):
    """Such run folders gave tracebacks in evaluate, export and predict."""
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    name, change, says = DAMAGES[damage]
    if name == "decoder.pt" and change == "sam":
        torch.save(torch.load(tiny_checkpoint, weights_only=True), run / name)
    elif name == "decoder.pt":
        torch.save(change(torch.load(run / name, weights_only=True)), run / name)
    else:
        (run / name).write_text(change)
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--decoder", str(run)]
    result = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "sam.pth")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert str(run / name) in result.output and says in result.output
    assert "--overwrite" in result.output  # the fix: train it again


def test_a_random_weights_run_is_predicted_and_exported_with_random_weights(
    finetuned_run, tiny_data, tmp_path
):
    """The pipeline check's run (vit_tiny, no official checkpoint) can be used by predict and
    export: --random-weights rebuilds the seeded SAM that embedded it, export writes that SAM
    as a file, and predict with that file gives the same mask."""
    import json

    import numpy as np
    from PIL import Image

    from floodcache.sam.checkpoints import RANDOM_WEIGHTS

    run = tmp_path / "smoke-run"
    shutil.copytree(finetuned_run, run)
    record = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(record | {"checkpoint_sha256": RANDOM_WEIGHTS}))
    image = next((tiny_data / "Image").iterdir())
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli.main, [*args, "--decoder", str(run)])

    unsaid = invoke("predict", "--image", str(image), "--out", str(tmp_path / "no.png"))
    assert unsaid.exit_code == 1 and "pass --random-weights" in unsaid.output, unsaid.output
    mask = tmp_path / "water.png"
    predicted = invoke("predict", "--random-weights", "--image", str(image), "--out", str(mask))
    assert predicted.exit_code == 0, predicted.output
    exported = tmp_path / "sam_tiny_flood.pth"
    done = invoke("export", "--random-weights", "--out", str(exported))
    assert done.exit_code == 0 and exported.is_file(), done.output
    again = tmp_path / "again.png"
    args = ("predict", "--checkpoint", str(exported), "--image", str(image), "--out", str(again))
    assert invoke(*args).exit_code == 0
    assert np.array_equal(np.array(Image.open(mask)), np.array(Image.open(again)))
    # a run of a real checkpoint is never given a random SAM
    real = runner.invoke(
        cli.main,
        ["predict", "--random-weights", "--decoder", str(finetuned_run), "--image", str(image)]
        + ["--out", str(tmp_path / "real.png")],
    )
    assert real.exit_code == 1 and "pass that file with --checkpoint" in real.output
