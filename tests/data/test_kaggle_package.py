"""The real `kaggle` package, which `download` uses: everything it imports is installed by
`pip install -e .`, so `download` works on a fresh install. No network: credentials are fake
and nothing is called."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import PROJECT

KAGGLE_PACKAGES = ("kaggle", "kagglesdk")


def _module_level_imports(package: str) -> set[str]:
    """The top-level names the package's modules import when they load (not inside a
    function, where an import is kaggle's own optional one)."""
    root = Path(importlib.util.find_spec(package).origin).parent
    names = set()
    for source in root.rglob("*.py"):
        for node in ast.parse(source.read_bytes()).body:
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _requirement_names(requirements) -> set[str]:
    names = (re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0] for line in requirements)
    return {name.lower().replace("_", "-") for name in names if name}


def test_every_package_kaggle_imports_is_a_declared_requirement():
    """A module kaggle imports but does not declare (six) must be in our install_requires,
    or a fresh install can lack it and `download` dies."""
    setup = configparser.ConfigParser()
    setup.read(PROJECT / "setup.cfg")
    declared = _requirement_names(setup["options"]["install_requires"].splitlines())
    for package in KAGGLE_PACKAGES:
        declared |= _requirement_names(importlib.metadata.requires(package) or [])
    distributions = importlib.metadata.packages_distributions()
    imported = set().union(*map(_module_level_imports, KAGGLE_PACKAGES))
    third_party = imported - set(sys.stdlib_module_names) - set(KAGGLE_PACKAGES)
    undeclared = {
        name: distributions.get(name)
        for name in third_party
        if not {d.lower() for d in distributions.get(name, [name])} & declared
    }
    assert not undeclared, f"add to setup.cfg install_requires: {undeclared}"


def test_the_real_kaggle_package_imports_in_a_clean_process(tmp_path):
    """Every module of kaggle and kagglesdk, imported in a fresh interpreter (no user site,
    no PYTHONPATH), with fake credentials so that `import kaggle` authenticates offline."""
    script = (
        "import importlib, pkgutil\n"
        f"for name in {KAGGLE_PACKAGES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    for module in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print('imported')\n"
    )
    env = {
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "KAGGLE_CONFIG_DIR": str(tmp_path / ".kaggle"),
        "KAGGLE_USERNAME": "someone",
        "KAGGLE_KEY": "0" * 32,
    }
    done = subprocess.run(
        [sys.executable, "-s", "-c", script],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]
