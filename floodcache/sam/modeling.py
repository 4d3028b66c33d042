"""segment-anything's model classes, imported without the rest of its package.

`import segment_anything` runs the package's __init__, which imports its predictor and mask
generator, hence torchvision, and torchvision imports torch._dynamo: seconds of start-up for
every command, though training and evaluating compile nothing. They need only
`segment_anything.modeling` and `build_sam`, so the package's __init__ is put off until one of
the package's own names is asked for (`from segment_anything import SamPredictor` then runs
it, as usual). Every floodcache module takes SAM's classes from here.
"""

from __future__ import annotations

import importlib.util
import sys


def _defer_package_init() -> None:
    """Register `segment_anything` with its __init__ not run yet (PEP 562 `__getattr__`
    runs it when a name of the package itself is asked for); nothing if already imported."""
    if "segment_anything" in sys.modules:
        return
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(
            "segment-anything is not installed: pip install -e . installs it",
            name="segment_anything",
        )
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def run_init(name: str):
        del package.__getattr__
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init  # type: ignore[method-assign]
    sys.modules["segment_anything"] = package


_defer_package_init()

from segment_anything.build_sam import _build_sam  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import (  # noqa: E402
    Attention as EncoderAttention,
)
from segment_anything.modeling.image_encoder import (  # noqa: E402
    Block,
    get_rel_pos,
    window_partition,
    window_unpartition,
)
from segment_anything.modeling.transformer import (  # noqa: E402
    Attention,
    TwoWayAttentionBlock,
)

__all__ = [
    "Attention",
    "Block",
    "EncoderAttention",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
    "_build_sam",
    "get_rel_pos",
    "window_partition",
    "window_unpartition",
]
