"""predict on a folder, an earlier version against this one, alternating in one process.

    git show REV:floodcache/predict/folder.py > /tmp/folder_old.py
    python scripts/ab_predict.py /tmp/folder_old.py --images 640 [--model-type vit_b]
        [--device cuda] [--rounds 3] [--profile FILE] [--workdir DIR]

Both segment the same generated scenes (bench's) with SAM's own decoder as the run's, after
one untimed warm-up run; it prints each run's images/s after SAM is ready, whether both wrote
the same masks, and the ratio of the medians. --profile: one more run of this predict under
cProfile, by internal time. The scenes and masks go to a temporary folder in --workdir (default:
the system's), removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from floodcache.bench.config import BenchConfig  # noqa: E402
from floodcache.bench.embed import dataset  # noqa: E402
from floodcache.bench.predict import predict_folder  # noqa: E402
from floodcache.predict import folder as new  # noqa: E402
from floodcache.sam.model import build_sam  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="an earlier floodcache/predict/folder.py")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--workdir", type=Path, help="default: the system's temporary folder")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("predict_old", args.old)
    old = importlib.util.module_from_spec(spec)
    sys.modules["predict_old"] = old  # dataclasses look their module up
    spec.loader.exec_module(old)
    with tempfile.TemporaryDirectory(prefix="ab-predict-", dir=args.workdir) as tmp:
        compare(args, old, Path(tmp))


def compare(args: argparse.Namespace, old: ModuleType, tmp: Path) -> None:
    """Run predict with `old`'s folder module and this one's, alternating, in `tmp`."""
    data_dir, _ = dataset(BenchConfig(views=4 * args.images, device=args.device), tmp)
    torch.manual_seed(0)
    sam = build_sam(args.model_type)
    config = predict_folder(sam, args.model_type, None, data_dir, args.images, tmp)
    config.model.device = args.device

    def run(module, name: str) -> float:
        settings = vars(replace(config, out=tmp / name))
        result = module.run_predict_folder(module.FolderConfig(**settings))
        rate = result.predicted / (result.seconds - result.load_seconds)
        print(f"{name}: {result.predicted} images, {rate:.1f} images/s after SAM ready, "
              f"batch {result.batch_size}, {result.precision}", flush=True)  # fmt: skip
        return rate

    run(new, "warm-up")
    rates: dict[str, list[float]] = {"old": [], "new": []}
    for i in range(args.rounds):
        order = [("old", old), ("new", new)][:: 1 if i % 2 == 0 else -1]
        for name, module in order:
            rates[name].append(run(module, f"{name}{i}"))
    same = all(
        np.array_equal(cv2.imread(str(mask), 0), cv2.imread(str(tmp / "new0" / mask.name), 0))
        for mask in sorted((tmp / "old0").glob("*.png"))
    )
    ratio = np.median(rates["new"]) / np.median(rates["old"])
    print(f"same masks: {same}; old {np.round(rates['old'], 1).tolist()}, "
          f"new {np.round(rates['new'], 1).tolist()} images/s; new/old {ratio:.2f}x")  # fmt: skip
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run, new, "profiled")
        with args.profile.open("w") as out:
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
