"""Where embed's main thread spends its CPU, by function: cProfile on thread CPU time.

On a fast GPU, embed's main thread can bound the rate (more so with --resize torch, where it
drives the device's resize). This runs embed on bench's generated
scenes for each resize, without compiling (compiling would fill the profile; the eager
encoder only adds its kernel launches), and prints the functions that took the main
thread's CPU, by their own time and with what they called.

    python scripts/profile_embed.py [--views 640] [--resize pil --resize torch] [--top 25]
        [--model-type vit_tiny] [--device cpu]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataclasses import replace  # noqa: E402

from floodcache.bench.config import BenchConfig  # noqa: E402
from floodcache.bench.embed import dataset, embed_settings  # noqa: E402
from floodcache.embed.run import run_embed  # noqa: E402
from floodcache.sam.precision import pick_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=640)
    parser.add_argument("--resize", action="append", choices=["pil", "torch"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--model-type", default="vit_b", help="vit_tiny for a quick CPU trial")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    device = pick_device(args.device)
    config = BenchConfig(views=args.views, model_type=args.model_type)
    with tempfile.TemporaryDirectory(prefix="floodcache-profile-") as tmp:
        data_dir, augment = dataset(config, Path(tmp))
        for resize in args.resize or ["pil", "torch"]:
            cache = Path(tmp) / f"{resize}.h5"
            settings = embed_settings(config, data_dir, augment, cache, device, resize)
            settings = replace(settings, compile=False)
            profile = cProfile.Profile(time.thread_time)  # this thread's CPU, not wall time
            start = time.perf_counter()
            profile.enable()
            result = run_embed(settings)
            profile.disable()
            seconds = time.perf_counter() - start
            print(
                f"\n=== resize {resize}: {result.embedded} views in {seconds:.1f} s; "
                f"main thread CPU by function (seconds) ==="
            )
            for order in ("tottime", "cumulative"):
                text = io.StringIO()
                stats = pstats.Stats(profile, stream=text).strip_dirs().sort_stats(order)
                stats.print_stats(args.top)
                print(text.getvalue().split("\n", 4)[-1].strip("\n"))


if __name__ == "__main__":
    main()
