"""`explore` as a user runs it: the address printed, Ctrl-C stopping it cleanly, a warning for
an address the network can reach, a taken port named, and nothing written anywhere."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from floodcache.explore import run as explore_run
from floodcache.explore.config import ExploreConfig
from floodcache.explore.run import open_explorer
from tests.helpers import PROJECT, press_ctrl_c, serving, start_interruptible


def test_ctrl_c_stops_the_explorer_cleanly(explore_config):
    command = [sys.executable, str(PROJECT / "cli.py"), "explore", "--cache"]
    command += [str(explore_config.cache), "--eval", str(explore_config.evaluation)]
    process = start_interruptible([*command, "--port", "0", "--device", "cpu"])
    try:
        ready = process.stdout.readline()
        assert ready.startswith("explorer ready: open http://127.0.0.1:"), process.stderr.read()
        url = ready.split("open ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/summary", timeout=60) as response:
            assert json.loads(response.read())["views"] == 3
        press_ctrl_c(process)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "explorer stopped" in out and "Traceback" not in err


def test_another_host_is_served_with_a_warning(monkeypatch, explore_config):
    served = []
    monkeypatch.setattr(explore_run, "run_explore", lambda config, announce: served.append(config))
    options = ["--cache", str(explore_config.cache), "--eval", str(explore_config.evaluation)]
    result = CliRunner().invoke(cli.main, ["explore", *options, "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "anyone on that network can open the page" in result.output
    assert served[0].host == "0.0.0.0"
    result = CliRunner().invoke(cli.main, ["explore", *options])
    assert "warning" not in result.output and served[1].host == "127.0.0.1"


def test_a_taken_port_is_named_with_the_fix(explore_config):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ExploreConfig(explore_config.cache, explore_config.evaluation, port=port)
        with pytest.raises(ValueError, match=f"port {port} .* is taken.*--port"):
            open_explorer(config)


def fingerprints(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `folders`: its size, modification time and sha256."""
    found = {}
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns, _sha256(path))
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_exploring_writes_nothing(explore_config, finetuned_run):
    folders = (explore_config.cache.parent, explore_config.evaluation, finetuned_run)
    before = fingerprints(*folders)
    with serving(explore_config) as url:
        table = json.loads(urllib.request.urlopen(url + "api/table", timeout=60).read())
        row = table["rows"][0][0]
        urllib.request.urlopen(url + f"api/view/{row}", timeout=60).read()
        asked = json.dumps({"row": row, "points": [[2, 2]], "labels": [1]}).encode()
        request = urllib.request.Request(url + "api/answer", asked, method="POST")
        assert "models" in json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert fingerprints(*folders) == before
