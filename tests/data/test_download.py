"""Tests for floodcache/download.py, with the network faked.

Checkpoints come from a local http.server on 127.0.0.1 that honours Range (or is told not to,
or to drop the connection part-way); Kaggle is a fake `kaggle` module in sys.modules. A guard
fails any test that tries to open a socket to anything but the loopback address.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import os
import socket
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from floodcache.data import download
from floodcache.data.download import (
    DownloadError,
    KaggleCredentialsMissing,
    download_checkpoint,
    download_dataset,
)
from floodcache.sam import checkpoints
from floodcache.sam.checkpoints import (
    CheckpointSpec,
)
from floodcache.utils import hashing
from floodcache.utils.hashing import sha256_file

PAYLOAD = bytes(range(256)) * 1200  # 307200 bytes: a stand-in checkpoint


PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


VIT_B = "sam_vit_b_01ec64.pth"


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Fail loudly if anything under test reaches past the loopback interface."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"test tried to connect to {address}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise AssertionError(f"test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class CheckpointServer(http.server.ThreadingHTTPServer):
    """Serves `files` by name; records each request's Range header and the body bytes sent."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str | None, int]] = []  # (Range header, body bytes sent)
        self.ignore_range = False
        self.cut_after: int | None = None  # send this many body bytes, then hang up
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server: CheckpointServer = self.server
        body = server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        start = 0
        if asked and not server.ignore_range:
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                server.requests.append((asked, 0))  # before answering: the client may check next
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.cut_after is not None:
            payload = payload[: server.cut_after]
        server.requests.append((asked, len(payload)))
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A checkpoint server holding PAYLOAD as vit_b, registered in CHECKPOINTS."""
    server = CheckpointServer()
    server.files[VIT_B] = PAYLOAD
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    spec = CheckpointSpec(f"{server.url}/{VIT_B}", PAYLOAD_SHA, len(PAYLOAD))
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "vit_b", spec)
    yield server
    server.shutdown()
    server.server_close()


def test_sha256_file_matches_hashlib_across_blocks(tmp_path):
    data = os.urandom(hashing.BLOCK_SIZE * 2 + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_full_download_verifies_and_leaves_no_part(server, tmp_path, capsys):
    path = download_checkpoint("vit_b", tmp_path, progress=True)
    assert path == tmp_path / VIT_B
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / f"{VIT_B}.part").exists()
    assert server.requests == [(None, len(PAYLOAD))]
    assert VIT_B.removesuffix(".pth") in capsys.readouterr().err  # the progress bar ran


def test_verified_file_is_not_downloaded_again(server, tmp_path):
    download_checkpoint("vit_b", tmp_path, progress=False)
    server.requests.clear()
    assert download_checkpoint("vit_b", tmp_path, progress=False) == tmp_path / VIT_B
    assert server.requests == []


def test_resume_requests_only_the_missing_bytes(server, tmp_path):
    (tmp_path / f"{VIT_B}.part").write_bytes(PAYLOAD[:100_000])
    path = download_checkpoint("vit_b", tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("bytes=100000-", len(PAYLOAD) - 100_000)]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    (tmp_path / f"{VIT_B}.part").write_bytes(b"\0" * 100_000)  # appending would corrupt it
    path = download_checkpoint("vit_b", tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("bytes=100000-", len(PAYLOAD))]


def test_part_longer_than_the_served_file_is_discarded(server, tmp_path):
    server.files[VIT_B] = PAYLOAD[:50_000]  # the file at the URL shrank: the server answers 416
    (tmp_path / f"{VIT_B}.part").write_bytes(PAYLOAD[:100_000])
    with pytest.raises(DownloadError, match=f"is 100000 bytes, expected {len(PAYLOAD)}"):
        download_checkpoint("vit_b", tmp_path, progress=False)
    assert server.requests == [("bytes=100000-", 0)]
    assert list(tmp_path.iterdir()) == []


def test_the_guard_keeps_the_real_download_location_out_of_reach(tmp_path):
    with pytest.raises(AssertionError, match="dl.fbaipublicfiles.com"):
        download_checkpoint("vit_b", tmp_path, progress=False)


def test_sha_mismatch_deletes_the_part_and_says_so(server, tmp_path, monkeypatch):
    spec = CheckpointSpec(f"{server.url}/{VIT_B}", "0" * 64, len(PAYLOAD))
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "vit_b", spec)
    with pytest.raises(DownloadError) as raised:
        download_checkpoint("vit_b", tmp_path, progress=False)
    message = str(raised.value)
    assert f"has sha256 {PAYLOAD_SHA}, expected {'0' * 64}" in message
    assert "\n  floodcache download --model-type vit_b --checkpoint-dir" in message
    assert list(tmp_path.iterdir()) == []


def test_offline_gives_a_clear_error_and_no_final_file(server, tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(DownloadError) as raised:
        download_checkpoint("vit_b", tmp_path, progress=False, base_url=closed_url)
    message = str(raised.value)
    assert message.startswith(f"Downloading {closed_url}/{VIT_B} failed:")
    assert "Nothing was downloaded" in message and "floodcache download" in message
    assert ".part" not in message  # no partial file is named: none exists
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_keeps_the_part_and_a_rerun_resumes(server, tmp_path):
    server.cut_after = 120_000
    with pytest.raises(DownloadError) as raised:
        download_checkpoint("vit_b", tmp_path, progress=False)
    assert f"120000 of {len(PAYLOAD)} bytes are kept in" in str(raised.value)
    assert not (tmp_path / VIT_B).exists()
    assert (tmp_path / f"{VIT_B}.part").read_bytes() == PAYLOAD[:120_000]

    server.cut_after = None
    assert download_checkpoint("vit_b", tmp_path, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("bytes=120000-", len(PAYLOAD) - 120_000)


def test_stalled_server_times_out_and_says_how_to_rerun(tmp_path, monkeypatch):
    listener = socket.socket()  # accepts the connection, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
    monkeypatch.setitem(
        checkpoints.CHECKPOINTS, "vit_b", CheckpointSpec(f"{url}/{VIT_B}", None, 10)
    )
    try:
        with pytest.raises(DownloadError, match="timed out. Nothing was downloaded.*rerun"):
            download_checkpoint("vit_b", tmp_path, progress=False)
    finally:
        listener.close()
    assert not (tmp_path / VIT_B).exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_disk_full_leaves_the_final_path_untouched(server, tmp_path):
    (tmp_path / f"{VIT_B}.part").symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(DownloadError) as raised:
        download_checkpoint("vit_b", tmp_path, progress=False)
    assert str(raised.value).startswith("No space left on the disk while writing")
    assert not (tmp_path / VIT_B).exists()


def test_server_file_of_another_size_is_refused_before_downloading(server, tmp_path):
    server.files[VIT_B] = PAYLOAD + b"extra"
    with pytest.raises(DownloadError, match=f"is {len(PAYLOAD) + 5} bytes, not the"):
        download_checkpoint("vit_b", tmp_path, progress=False)
    assert not (tmp_path / VIT_B).exists()


def test_without_a_known_sha_the_size_decides_with_a_warning(server, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(
        checkpoints.CHECKPOINTS,
        "vit_b",
        CheckpointSpec(f"{server.url}/{VIT_B}", None, len(PAYLOAD)),
    )
    with caplog.at_level(logging.WARNING, logger="floodcache.download"):
        path = download_checkpoint("vit_b", tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert f"no sha256 is known for {VIT_B}" in caplog.text
    assert PAYLOAD_SHA in caplog.text


def test_a_wrong_file_at_the_final_path_is_reported_not_replaced(server, tmp_path):
    (tmp_path / VIT_B).write_bytes(b"not a checkpoint")
    with pytest.raises(DownloadError, match="already exists but is 16 bytes"):
        download_checkpoint("vit_b", tmp_path, progress=False)
    assert (tmp_path / VIT_B).read_bytes() == b"not a checkpoint"
    assert server.requests == []


def flood_zip(prefix: str = "") -> bytes:
    """A tiny archive in the Kaggle layout, every member under `prefix`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{prefix}Image/0.jpg", b"jpeg bytes")
        archive.writestr(f"{prefix}Mask/0.png", b"png bytes")
        archive.writestr(f"{prefix}metadata.csv", "Image,Mask\n0.jpg,0.png\n")
    return buffer.getvalue()


class FakeKaggleApi:
    """Stands in for `kaggle.api`: no credentials check or download reaches the network."""

    config_dir = "/home/user/.kaggle"

    def __init__(self, archive: bytes | None = None, authenticated: bool = True, error=None):
        self.archive, self.authenticated, self.error = archive, authenticated, error
        self.downloads: list[str] = []

    def authenticate(self):
        if not self.authenticated:
            print("Authentication required to call the Kaggle API.")  # what kaggle 2.x prints
            raise SystemExit(1)

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False):
        self.downloads.append(dataset)
        if self.error is not None:
            raise self.error
        Path(path, dataset.split("/")[1] + ".zip").write_bytes(self.archive)


def fake_kaggle(monkeypatch, api: FakeKaggleApi) -> FakeKaggleApi:
    monkeypatch.setitem(sys.modules, "kaggle", types.SimpleNamespace(api=api))
    return api


@pytest.mark.parametrize("prefix", ["", "flood-area-segmentation/"])
def test_dataset_is_unpacked_into_the_kaggle_layout(tmp_path, monkeypatch, prefix):
    api = fake_kaggle(monkeypatch, FakeKaggleApi(flood_zip(prefix)))
    data_dir = tmp_path / "data"
    assert download_dataset(data_dir) == data_dir
    assert api.downloads == ["faizalkarim/flood-area-segmentation"]
    assert (data_dir / "Image" / "0.jpg").read_bytes() == b"jpeg bytes"
    assert (data_dir / "Mask" / "0.png").read_bytes() == b"png bytes"
    assert (data_dir / "metadata.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the staging folder is gone


def test_metadata_beside_a_nested_folder_is_moved_in(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flood/Image/0.jpg", b"j")
        archive.writestr("flood/Mask/0.png", b"p")
        archive.writestr("metadata.csv", "Image,Mask\n")
    fake_kaggle(monkeypatch, FakeKaggleApi(buffer.getvalue()))
    download_dataset(tmp_path / "data")
    assert (tmp_path / "data" / "metadata.csv").read_text() == "Image,Mask\n"


def test_existing_layout_is_not_downloaded_again(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle", None)  # importing kaggle would now fail
    for name in ("Image/0.jpg", "Mask/0.png"):
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes(b"x")
    assert download_dataset(tmp_path) == tmp_path


def test_missing_kaggle_credentials_say_how_to_add_them(tmp_path, monkeypatch, capsys):
    api = fake_kaggle(monkeypatch, FakeKaggleApi(authenticated=False))
    with pytest.raises(KaggleCredentialsMissing) as raised:
        download_dataset(tmp_path / "data")
    message = str(raised.value)
    for how in ("KAGGLE_API_TOKEN", "~/.kaggle/kaggle.json", "KAGGLE_USERNAME"):
        assert how in message
    assert "kaggle auth login" in message
    assert api.downloads == []
    assert list(tmp_path.iterdir()) == []
    assert "Authentication required" not in capsys.readouterr().out  # kaggle's own text hidden


def kaggle_package(tmp_path, monkeypatch, code: str) -> None:
    """A `kaggle` package that runs `code` when imported, found before any other."""
    package = tmp_path / "site" / "kaggle"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(code)
    monkeypatch.delitem(sys.modules, "kaggle", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_kaggle_that_exits_at_import_gets_the_same_message(tmp_path, monkeypatch):
    kaggle_package(tmp_path, monkeypatch, "raise SystemExit(1)\n")  # 1.x without credentials
    with pytest.raises(KaggleCredentialsMissing, match="KAGGLE_API_TOKEN"):
        download_dataset(tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("missing", ["kaggle", "six"])
def test_the_package_missing_is_the_one_named(tmp_path, monkeypatch, missing):
    """kaggle 1.x imports six: without it, "kaggle is not installed" sent users the wrong way."""
    kaggle_package(tmp_path, monkeypatch, "import six\n")
    monkeypatch.setitem(sys.modules, missing, None)  # importing it fails, as when not installed
    needs = ", which the kaggle package needs," if missing == "six" else ""
    with pytest.raises(DownloadError, match=f"The {missing} package{needs} is not installed: pip"):
        download_dataset(tmp_path / "data")


def test_failed_kaggle_download_leaves_nothing_behind(tmp_path, monkeypatch):
    fake_kaggle(monkeypatch, FakeKaggleApi(error=ConnectionError("network is unreachable")))
    with pytest.raises(DownloadError, match="network is unreachable"):
        download_dataset(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_archive_without_the_layout_is_refused(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images/0.jpg", b"j")
    fake_kaggle(monkeypatch, FakeKaggleApi(buffer.getvalue()))
    with pytest.raises(
        DownloadError, match=r"has no Image/ and Mask/ folders \(it holds \['images'\]"
    ):
        download_dataset(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_archive_is_reported(tmp_path, monkeypatch):
    fake_kaggle(monkeypatch, FakeKaggleApi(b"not a zip"))
    with pytest.raises(DownloadError, match="is not a valid zip"):
        download_dataset(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_folder_without_the_layout_is_left_alone(tmp_path, monkeypatch):
    api = fake_kaggle(monkeypatch, FakeKaggleApi(flood_zip()))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="is not empty but has no Image/ and Mask/"):
        download_dataset(tmp_path)
    assert api.downloads == []
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
