"""How the user started floodcache, so that a message names the command they would type.

An installed user types `floodcache embed`; from a checkout it is `python cli.py embed`. The
library names a command and a config field (`command("embed")`, `option("overwrite")`) and this
module spells them; the command layer says once how the program was started (`started_as`).
Code that uses the library from Python, without the command line, gets the installed spelling.
"""

from __future__ import annotations

INSTALLED = "floodcache"

_program = INSTALLED


def started_as(name: str | None) -> None:
    """Record the program name the command line was started with (click's, from sys.argv[0]):
    a Python file such as `cli.py` is run as `python cli.py`; any other name than the
    console script's (a test runner, `python -c`) keeps the installed spelling."""
    global _program
    if name and name.endswith(".py"):
        _program = f"python {name}"
    else:
        _program = INSTALLED


def typed(name: str, *args: object) -> str:
    """`name` with `args` as the user would type it: "floodcache embed", for a line of its own."""
    return " ".join([_program, name, *(str(arg) for arg in args)])


def command(name: str, *args: object) -> str:
    """`typed(name, *args)` in backquotes, for a sentence: "`floodcache embed`"."""
    return f"`{typed(name, *args)}`"


def option(field: str) -> str:
    """The command-line option of a config field: "overwrite" -> "--overwrite",
    "model_type" -> "--model-type"."""
    return "--" + field.replace("_", "-")
