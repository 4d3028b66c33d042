"""A message names the command the user typed: `floodcache ...` installed, `python cli.py ...`
from a checkout, and the installed spelling for code that uses the library from Python."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.utils import program
from tests.helpers import PROJECT


@pytest.fixture
def restored():
    yield
    program.started_as(None)


def _refusal(command: list[str], tmp_path) -> str:
    """stderr of `command verify` on a cache that does not exist, run in the checkout."""
    missing = tmp_path / "missing.h5"
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [*command, "verify", "--cache", str(missing)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_from_a_checkout_the_message_says_python_cli_py(tmp_path):
    stderr = _refusal([sys.executable, "cli.py"], tmp_path)
    assert "does not exist: build it with `python cli.py embed`" in stderr


def test_installed_the_message_says_floodcache(tmp_path):
    # The script pip writes for the console_scripts entry point, as it writes it
    (script,) = entry_points(group="console_scripts", name="floodcache")
    module, attribute = script.value.split(":")
    launcher = tmp_path / "bin" / "floodcache"
    launcher.parent.mkdir()
    launcher.write_text(
        "import re\n"
        "import sys\n"
        f"from {module} import {attribute}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({attribute}())\n"
    )
    stderr = _refusal([sys.executable, str(launcher)], tmp_path)
    assert "does not exist: build it with `floodcache embed`" in stderr
    assert "cli.py" not in stderr


def test_from_python_the_library_names_the_installed_command(tmp_path):
    with pytest.raises(CacheError, match="build it with `floodcache embed`"):
        Cache.open(tmp_path / "missing.h5")


def test_a_python_file_is_run_with_python(restored):
    program.started_as("cli.py")
    assert program.command("verify", program.option("cache"), "c.h5") == (
        "`python cli.py verify --cache c.h5`"
    )
    assert program.typed("embed", program.option("overwrite")) == "python cli.py embed --overwrite"
    program.started_as("floodcache")
    assert program.command("embed") == "`floodcache embed`"
    program.started_as("main")  # click's name under a test runner: no program a user types
    assert program.command("embed") == "`floodcache embed`"


def test_an_option_is_spelled_from_its_config_field():
    assert program.option("overwrite") == "--overwrite"
    assert program.option("checkpoint_dir") == "--checkpoint-dir"


def _strings(path) -> list[str]:
    """The strings a module may show: its literals, f-strings' parts included, docstrings not,
    and the options it names by config field."""
    tree = ast.parse(path.read_text())
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
    }
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip
    rendered = [  # option("field") calls, as they render
        program.option(node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "option"
        and node.args and isinstance(node.args[0], ast.Constant)
        and not str(node.args[0].value).startswith("--")  # the command layer's own decorator
    ]  # fmt: skip
    return literals + rendered


def test_every_option_a_message_names_is_one_the_command_line_takes():
    import cli

    commands = [cli.main, *cli.main.commands.values()]
    taken = {opt for command in commands for param in command.params for opt in param.opts}
    unknown = {
        flag: str(path.relative_to(PROJECT))
        for path in (PROJECT / "floodcache").rglob("*.py")
        for text in _strings(path)
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)
        if flag not in taken | {"--help"}
    }
    assert unknown == {}
