"""floodcache: adapt SAM to flood-water segmentation from a cache of image embeddings.

The stages, from the bottom up (a stage imports only the ones below it):

    settings, prompts, utils   registries and defaults, prompt strategies, shared mechanisms
    sam, data                  SAM and its preprocessing; pairs, audit, views, downloads
    cache                      the HDF5 embedding cache: format, reader, verify, writer
    embed, train               the encoder once per view into a cache; the decoder from it
    evaluate, predict, export  fine-tuned vs pretrained metrics; new images; merged weights
    report, bench, pipeline    report.md; measurements; `run`, every stage in order
    commands                   the command line

Every stage's function and config can be had from here, imported when first used, so that
`import floodcache` costs nothing:

    from floodcache import EmbedConfig, run_embed
    run_embed(EmbedConfig(data_dir="data/flood", random_weights=True, model_type="vit_tiny"))
"""

import importlib
import os

# albumentations asks PyPI for a newer version of itself on every import: up to 2 s and a
# warning on a machine without internet, as flood-mapping machines in the field often are.
# floodcache reaches the network in `download` alone. A user's own setting is kept.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_PUBLIC = {  # name -> the module that defines it
    "audit_folder": "floodcache.data.audit",
    "download_checkpoint": "floodcache.data.download",
    "download_dataset": "floodcache.data.download",
    "EmbedConfig": "floodcache.embed.config",
    "run_embed": "floodcache.embed.run",
    "Cache": "floodcache.cache.reader",
    "verify": "floodcache.cache.verify",
    "TrainConfig": "floodcache.train.config",
    "run_train": "floodcache.train.run",
    "EvaluateConfig": "floodcache.evaluate.config",
    "run_evaluate": "floodcache.evaluate.evaluate",
    "ReportConfig": "floodcache.report.config",
    "run_report": "floodcache.report.report",
    "PredictConfig": "floodcache.predict.config",
    "ModelConfig": "floodcache.predict.config",
    "run_predict": "floodcache.predict.run",
    "PhotoConfig": "floodcache.predict.config",
    "run_predict_photo": "floodcache.predict.segmenter",
    "FolderConfig": "floodcache.predict.config",
    "run_predict_folder": "floodcache.predict.folder",
    "SceneConfig": "floodcache.predict.config",
    "run_predict_scene": "floodcache.predict.scene",
    "run_predict_scenes": "floodcache.predict.scene_folder",
    "RasterReading": "floodcache.data.raster",
    "ExportConfig": "floodcache.export",
    "run_export": "floodcache.export",
    "PipelineConfig": "floodcache.pipeline.config",
    "run_pipeline": "floodcache.pipeline.run",
    "BenchConfig": "floodcache.bench.config",
    "run_bench": "floodcache.bench.run",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'floodcache' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
