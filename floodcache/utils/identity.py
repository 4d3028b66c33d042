"""Which settings make an artifact what it is, said once beside each field of its config.

Every field of an artifact's config (a cache's `EmbedConfig`, a run's `TrainConfig`, an
evaluation's, a prediction folder's) is declared with `setting(default, identity=...)`:
`identity=True` when a change of it must give another artifact (the seed, the learning rate),
`identity=False` when it only says where the artifact goes or how the work is shown (the output
folder, the progress bar). The identity recorded beside an artifact, the comparison with an
earlier one and the refusal that lists their differences all come from that one declaration,
so a field added without a decision fails `undeclared_fields` and its test.

    @dataclass
    class TrainConfig:
        lr: float = setting(1e-4, identity=True)
        out: Path | None = setting(None, identity=False)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from floodcache.utils.differences import refuse_if_different

IDENTITY = "floodcache_identity"  # the metadata key of a declared field
RECORD = "floodcache_record"  # optional: how the field's value is written in the identity
KEY = "floodcache_key"  # optional: the name the identity gives the field, where it differs
# optional: the identity leaves the field out while it holds its default
OMIT_DEFAULT = "floodcache_omit_default"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    identity: bool,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    record: Callable[[Any], Any] | None = None,
    key: str | None = None,
    omit_default: bool = False,
) -> Any:
    """A config field with its decision: does a change of it make another artifact?

    `record` turns the value into what the identity stores (e.g. a resize name into the
    method it stands for); `key` names it there when an older artifact knew it by another
    name, so that artifacts made before keep their identity; `omit_default` leaves the field
    out of the identity while it holds its default, so that artifacts made before the field
    existed keep theirs."""
    metadata: dict[str, Any] = {IDENTITY: identity}
    if record is not None:
        metadata[RECORD] = record
    if key is not None:
        metadata[KEY] = key
    if omit_default:
        metadata[OMIT_DEFAULT] = True
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def identity_fields(config_class: type) -> tuple[str, ...]:
    """The names of the fields of `config_class` declared `identity=True`, in order."""
    return tuple(
        f.name for f in dataclasses.fields(config_class) if f.metadata.get(IDENTITY) is True
    )


def undeclared_fields(config_class: type) -> list[str]:
    """Fields of `config_class` declared without `setting(...)`: each needs a decision."""
    return [f.name for f in dataclasses.fields(config_class) if IDENTITY not in f.metadata]


def identity_of(config: Any, **derived: Any) -> dict[str, Any]:
    """The identity of the artifact `config` makes: every identity field, as JSON values,
    under its identity name, plus `derived` entries that come from elsewhere (a checkpoint's
    sha256, the fingerprint of the cache a run was trained on)."""
    record: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.metadata.get(IDENTITY) is not True:
            continue
        value = getattr(config, f.name)
        if f.metadata.get(OMIT_DEFAULT) and value == _default(f):
            continue
        convert = f.metadata.get(RECORD)
        record[f.metadata.get(KEY, f.name)] = plain(convert(value) if convert else value)
    return record | {name: plain(value) for name, value in derived.items()}


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# The refusal of an artifact whose recorded identity differs from this one's, naming each
# difference: the differences module's own, named here so that identity, comparison and
# refusal are all had from this module.
refuse_other = refuse_if_different


def plain(value: Any) -> Any:
    """`value` as JSON writes and reads it back, so that a recorded identity compares equal
    to a fresh one: paths as text, tuples as lists, dataclasses as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
