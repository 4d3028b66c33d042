"""The refusal of a result made with other settings: a cache, a cache's parts, a run, a
resumable training state or an evaluation, each named with what differs, in a few lines."""

from __future__ import annotations

import hashlib
import json

SHOWN = 60  # characters of a value shown as it is; longer ones are summed up


def differences(
    old: dict, new: dict, old_name: str = "cache has", new_name: str = "asked"
) -> list[str]:
    """One line per key whose value differs: `key: OLD_NAME old, NEW_NAME new`. A long value
    (the list of a cache's views, an augmentation recipe) is summed up, not printed."""
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before != after:
            line = f"{key}: {old_name} {_brief(before)}, {new_name} {_brief(after)}"
            lines.append(line + _first_difference(before, after))
    return lines


def refuse_if_different(
    old: dict,
    new: dict,
    what: str,
    fix: str,
    error: type[Exception] = ValueError,
    names: tuple[str, str] = ("has", "asked"),
) -> None:
    """Raise `error`: "`what`:" then the differences, then `fix`; nothing when none differ."""
    lines = differences(old, new, *names)
    if lines:
        raise error(f"{what}:\n  " + "\n  ".join(lines) + f"\n{fix}")


def _brief(value) -> str:
    text = repr(value)
    if len(text) <= SHOWN:
        return text
    if isinstance(value, (list, tuple)):
        return f"{len(value)} entries"
    if isinstance(value, dict):
        return f"{len(value)} keys"
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode())
    return f"{text[:24]}... (sha256 {digest.hexdigest()[:12]})"


def _first_difference(before, after) -> str:
    """Where two long lists part, so that a user sees which entry changed."""
    if not (isinstance(before, (list, tuple)) and isinstance(after, (list, tuple))):
        return ""
    if len(repr(before)) <= SHOWN and len(repr(after)) <= SHOWN:
        return ""
    index = next(
        (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
        min(len(before), len(after)),
    )
    first = before[index] if index < len(before) else "(none)"
    second = after[index] if index < len(after) else "(none)"
    return f"; first difference at entry {index}: {first!r} against {second!r}"
