"""What `run` is asked: each stage's own config, nested (`PipelineConfig`), and where their
files go (`layout`). Torch-free, so that the command line reads its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from floodcache.embed.config import EmbedConfig
from floodcache.evaluate.config import EvaluateConfig
from floodcache.prompts import parse_prompts
from floodcache.report.config import ReportConfig
from floodcache.train.config import TrainConfig
from floodcache.utils.outputs import inside, plain_name


def _study_embed() -> EmbedConfig:
    return EmbedConfig(augment=3)  # the study's augmentation of each training image


def _study_train() -> TrainConfig:
    return TrainConfig()  # train's defaults: one decoder for every prompt


def _study_report() -> ReportConfig:
    return ReportConfig(evaluate=EvaluateConfig())


@dataclass
class PipelineConfig:
    """Everything `run` needs: each stage's config, whose files `layout` places."""

    embed: EmbedConfig = field(default_factory=_study_embed)
    train: TrainConfig = field(default_factory=_study_train)
    report: ReportConfig = field(default_factory=_study_report)  # evaluates first
    out_dir: Path = Path(".")  # root of cache/, runs/ and reports/
    name: str = "flood"  # names the cache, run and report
    overwrite: bool = False  # retrain / re-evaluate when settings changed (never the cache)
    progress: bool = True

    def __post_init__(self) -> None:
        """Place each stage's files (`layout`) and pass on `overwrite` and `progress`."""
        cache, run, report_dir = layout(self)
        shown, again = self.progress, self.overwrite
        self.embed = replace(self.embed, cache=cache, progress=shown)
        self.train = replace(self.train, cache=cache, out=run, overwrite=again, progress=shown)
        evaluate = replace(
            self.report.evaluate or EvaluateConfig(),
            cache=cache,
            decoders=(run,),
            overwrite=again,
            progress=shown,
        )
        evaluate = replace(evaluate, out=report_dir)
        self.report = replace(self.report, out=report_dir, metrics=report_dir, evaluate=evaluate)


def layout(config: PipelineConfig) -> tuple[Path, Path, Path]:
    """(cache file, run folder, report folder) of a pipeline; ValueError naming --name where
    one of them would lie outside its folder (a name with / or ..)."""
    root, name = Path(config.out_dir), plain_name(config.name, "--name")
    prompts = "+".join(s.name for s in parse_prompts(config.train.train_prompts))
    return (
        inside(root / "cache", f"{name}.h5", "--name"),
        inside(root / "runs", f"{name}-{prompts}", "--name"),
        inside(root / "reports", name, "--name"),
    )
