from dataclasses import dataclass, field
from pathlib import Path

import pytest

from floodcache.embed.config import EmbedConfig
from floodcache.evaluate.config import EvaluateConfig
from floodcache.train.config import TrainConfig
from floodcache.utils.identity import (
    identity_fields,
    identity_of,
    refuse_other,
    setting,
    undeclared_fields,
)


@dataclass
class Recipe:
    scale: float = 1.0


@dataclass
class Example:
    seed: int = setting(0, identity=True)
    resize: str = setting("pil", identity=True, record=str.upper, key="resize_method")
    fractions: tuple = setting((0.7, 0.3), identity=True)
    recipe: Recipe = setting(default_factory=Recipe, identity=True)
    out: Path = setting(Path("runs/x"), identity=False)


@dataclass
class Forgotten:
    seed: int = setting(0, identity=True)
    batch: int = 4
    other: int = field(default=1)


def test_identity_holds_the_declared_fields_as_json_writes_them():
    config = Example(seed=3, out=Path("elsewhere"))
    assert identity_fields(Example) == ("seed", "resize", "fractions", "recipe")
    assert identity_of(config, checkpoint_sha256="abc") == {
        "seed": 3,
        "resize_method": "PIL",
        "fractions": [0.7, 0.3],
        "recipe": {"scale": 1.0},
        "checkpoint_sha256": "abc",
    }


def test_a_field_without_a_decision_is_named():
    assert undeclared_fields(Example) == []
    assert undeclared_fields(Forgotten) == ["batch", "other"]


def test_a_changed_identity_field_is_refused_with_its_difference_and_the_fix():
    old = identity_of(Example())
    refuse_other(old, identity_of(Example(out=Path("moved"))), "run", "fix")
    with pytest.raises(FileExistsError) as raised:
        refuse_other(
            old, identity_of(Example(seed=1)), "runs/x differs", "use --overwrite", FileExistsError
        )
    assert "seed: has 0, asked 1" in str(raised.value)
    assert str(raised.value).endswith("use --overwrite")


@dataclass
class Later:
    seed: int = setting(0, identity=True)
    recipe: Recipe = setting(default_factory=Recipe, identity=True, omit_default=True)


def test_a_field_added_later_stays_out_of_the_identity_at_its_default():
    assert identity_of(Later(seed=2)) == {"seed": 2}  # as artifacts made before it recorded
    assert identity_of(Later(recipe=Recipe(2.0))) == {"seed": 0, "recipe": {"scale": 2.0}}


@pytest.mark.parametrize("config_class", [EmbedConfig, TrainConfig, EvaluateConfig])
def test_every_field_of_an_artifact_config_says_whether_it_makes_the_artifact(config_class):
    assert undeclared_fields(config_class) == [], "declare each with setting(..., identity=)"
    assert identity_fields(config_class)  # and some do
