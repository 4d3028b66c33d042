"""The package's functions read at once: few long parameter lists, every public one typed."""

from __future__ import annotations

import ast
from pathlib import Path

import floodcache

PACKAGE = Path(floodcache.__file__).parent
MOST_LONG_SIGNATURES = 3  # functions of 7 or more parameters, each saying why in its docstring
LONG = 7

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions() -> list[tuple[str, Function, ast.ClassDef | None]]:
    """(file:qualified name, function, its class) for every function of the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {
            id(child): node
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            for child in node.body
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                owner = classes.get(id(node))
                name = f"{owner.name}.{node.name}" if owner else node.name
                found.append((f"{path.relative_to(PACKAGE.parent)}:{name}", node, owner))
    return found


def _parameters(function: Function, owner: ast.ClassDef | None) -> list[ast.arg]:
    """Its parameters, *args and **kwargs included, self or cls of a method left out."""
    args = function.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if owner and named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return named + [arg for arg in (args.vararg, args.kwarg) if arg is not None]


def test_at_most_three_functions_take_seven_parameters_and_each_says_why():
    long = {
        name: (function, owner)
        for name, function, owner in _functions()
        if len(_parameters(function, owner)) >= LONG
    }
    assert len(long) <= MOST_LONG_SIGNATURES, (
        f"{len(long)} functions take {LONG} or more parameters (at most "
        f"{MOST_LONG_SIGNATURES}): group some into a config dataclass: {sorted(long)}"
    )
    for name, (function, owner) in long.items():
        doc = ast.get_docstring(function) or ""
        if function.name == "__init__" and owner is not None:
            doc += ast.get_docstring(owner) or ""
        assert "parameters" in doc.lower(), f"{name}: say in its docstring why it takes so many"


def test_public_functions_annotate_every_parameter():
    untyped = [
        f"{name}({arg.arg})"
        for name, function, owner in _functions()
        if not function.name.startswith("_")
        for arg in _parameters(function, owner)
        if arg.annotation is None
    ]
    assert not untyped, f"annotate these parameters: {untyped}"
