"""Every value a request brings, checked before it reaches the cache or a decoder: a bad one
raises `BadRequest` with the HTTP status and a message that says what to send instead. No part
of a request ever becomes a path: a view is a row number looked up in the evaluation's set."""

from __future__ import annotations

import json
import math

import numpy as np

from floodcache.prompts import Prompt


class BadRequest(ValueError):
    """A request the explorer refuses: answered with `status` and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def view_row(text: str, rows: frozenset[int]) -> int:
    """The cache row a request names (decimal digits), when the evaluation holds that view."""
    if not text.isdigit() or len(text) > 12:
        raise BadRequest(f"view {text[:40]!r} is not a row number of the cache")
    row = int(text)
    if row not in rows:
        raise BadRequest(f"view {row} is not in the evaluation: pick one from the table", 404)
    return row


def read_json(body: bytes) -> dict:
    """A JSON object; NaN and infinities are refused, as no coordinate can be one."""

    def refuse(name: str):
        raise BadRequest(f"{name} is not a number a prompt can hold")

    try:
        value = json.loads(body, parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"the body is not JSON ({err}): send a JSON object") from err
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object with row, points, labels and box")
    return value


def user_prompt(asked: dict, size: tuple[int, int], max_points: int) -> Prompt:
    """The prompt of an answer request, in original-image pixels of a view of `size` (H, W).

    asked: {"points": [[x, y], ...], "labels": [1 | 0, ...], "box": [x0, y0, x1, y1] | null};
    every coordinate inside the image (0 <= x <= W, 0 <= y <= H), at most `max_points` points.
    """
    height, width = size
    points = asked.get("points") or []
    labels = asked.get("labels") or []
    if not isinstance(points, list) or not isinstance(labels, list):
        raise BadRequest("points must be a list of [x, y] and labels a list of 1 or 0")
    if len(points) > max_points:
        raise BadRequest(f"{len(points)} points: a prompt holds at most {max_points}", 413)
    if len(points) != len(labels):
        raise BadRequest(f"{len(points)} points but {len(labels)} labels: one label a point")
    if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
        raise BadRequest("labels must be 1 (water) or 0 (background)")
    xy = [_coordinates(point, 2, width, height, "point") for point in points]
    box = asked.get("box")
    if box is not None:
        box = _coordinates(box, 4, width, height, "box")
        if box[0] > box[2] or box[1] > box[3]:
            raise BadRequest(f"box {box} must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1")
    corners = None if box is None else np.asarray(box, np.float32)
    if not xy:
        return Prompt(points=None, labels=None, box=corners)
    return Prompt(points=np.asarray(xy, np.float32), labels=np.asarray(labels), box=corners)


def _coordinates(value, count: int, width: int, height: int, what: str) -> list[float]:
    """`count` numbers, x then y alternately, each finite and inside the image."""
    if not isinstance(value, list) or len(value) != count:
        raise BadRequest(f"a {what} is a list of {count} numbers, not {str(value)[:40]}")
    numbers = []
    for i, number in enumerate(value):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise BadRequest(f"{what} {str(value)[:60]} holds something that is not a number")
        limit = width if i % 2 == 0 else height
        if not math.isfinite(number) or not 0 <= number <= limit:
            raise BadRequest(
                f"{what} {str(value)[:60]} is outside the image: x in 0..{width}, y in 0..{height}"
            )
        numbers.append(float(number))
    return numbers
