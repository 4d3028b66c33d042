"""`run`: audit -> embed -> train -> evaluate -> report, then nothing redone on a second run."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from floodcache.cache.reader import Cache
from floodcache.data import audit
from floodcache.embed import plan
from floodcache.embed.config import EmbedConfig
from floodcache.evaluate.config import EvaluateConfig
from floodcache.pipeline import run as pipeline_run
from floodcache.pipeline.config import PipelineConfig, layout
from floodcache.pipeline.run import run_pipeline
from floodcache.report.config import ReportConfig
from floodcache.train.config import TrainConfig
from floodcache.train.runs import describe_run
from floodcache.utils.identity import identity_fields
from tests.helpers import RUN_CHANGES


def test_run_does_every_step_once_and_refuses_silent_retraining(tiny_data, tmp_path, monkeypatch):
    audits = []

    def counted_audit(*args, **kwargs):
        audits.append(args)
        return audit.audit_folder(*args, **kwargs)

    monkeypatch.setattr(plan, "audit_folder", counted_audit)  # run's audit and embed's
    config = PipelineConfig(
        embed=EmbedConfig(
            data_dir=tiny_data, random_weights=True, model_type="vit_tiny", augment=0
        ),
        train=TrainConfig(train_prompts="point,box,none", epochs=1),
        report=ReportConfig(evaluate=EvaluateConfig(eval_prompts="box,none")),
        out_dir=tmp_path,
        progress=False,
    )
    first = run_pipeline(config)
    assert len(audits) == 1  # embed plans from run's audit: the data is read once
    cache, run, report_dir = layout(config)
    assert (first.cache, first.run) == (cache, run)
    assert "views encoded" in first.steps["embed"] and "trained" in first.steps["train"]
    text = first.report.report.read_text()
    assert text.splitlines()[2].startswith("> **WARNING: RANDOM WEIGHTS")
    assert (report_dir / "audit.csv").exists() and (report_dir / "metrics.parquet").exists()
    with Cache.open(cache) as opened:
        assert opened.config["embed_seconds"] > 0  # for the report's timings
    outputs = [cache, run / "decoder.pt", report_dir / "metrics.parquet"]
    written = [path.stat().st_mtime_ns for path in outputs]

    second = run_pipeline(config)
    assert "cache complete, kept" in second.steps["embed"]
    assert "kept" in second.steps["train"] and second.report.reused
    assert [path.stat().st_mtime_ns for path in outputs] == written

    with pytest.raises(FileExistsError, match="(?s)epochs: run has 1, asked 2.*--overwrite"):
        run_pipeline(dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=2)))
    assert (run / "decoder.pt").stat().st_mtime_ns == written[1]


def test_every_identity_field_of_a_run_makes_run_train_again(
    train_cache, tiny_cache, finetuned_run, tmp_path
):
    """`run` keeps a finished run of the same identity, refuses one that differs in any
    identity field (or the cache it learnt from), and trains it again with overwrite."""
    assert set(RUN_CHANGES) == set(identity_fields(TrainConfig)), "give each field a change"
    run = tmp_path / "mix"
    shutil.copytree(finetuned_run, run)
    kept = TrainConfig(train_cache, run, train_prompts="point,box,none", epochs=1, progress=False)
    assert "kept" in pipeline_run._train(kept)
    changed = {name: {name: value} for name, value in RUN_CHANGES.items()}
    if describe_run(run).record.config.precision == "bf16":  # trained where auto is bf16
        changed["precision"] = {"precision": "fp32"}
    changed["cache_fingerprint"] = {"cache": tiny_cache}
    for key, change in changed.items():
        with pytest.raises(FileExistsError, match=f"\n  {key}: run has"):
            pipeline_run._train(dataclasses.replace(kept, **change))
    assert describe_run(run).sha256 == describe_run(finetuned_run).sha256  # nothing replaced
    again = pipeline_run._train(dataclasses.replace(kept, seed=1, overwrite=True))
    assert again.startswith("trained") and describe_run(run).record.config.seed == 1


@pytest.mark.parametrize("name", ["..", "../../x", "a/b"])
def test_a_name_that_leaves_its_folders_is_refused(tmp_path, name):
    """`run --name ..` wrote its report into the working folder itself, `../../x` two
    folders up."""
    with pytest.raises(ValueError, match="--name .* not a plain name"):
        PipelineConfig(out_dir=tmp_path / "a" / "b", name=name)
    assert not (tmp_path / "a").exists()


def test_run_refuses_a_report_folder_holding_the_users_files(tiny_data, tmp_path):
    config = PipelineConfig(
        embed=EmbedConfig(data_dir=tiny_data, random_weights=True, model_type="vit_tiny"),
        out_dir=tmp_path,
        progress=False,
    )
    report_dir = layout(config)[2]
    report_dir.mkdir(parents=True)
    (report_dir / "audit.md").write_text("the user's")
    with pytest.raises(FileExistsError, match="holds audit.md .*choose another --name"):
        run_pipeline(config)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["audit.md", "flood", "reports"]
