"""Fetch what floodcache needs from the internet: the flood data set and SAM checkpoints.

The data set comes from Kaggle through the `kaggle` package and is unpacked into the Kaggle
layout (DIR/Image/<id>.jpg, DIR/Mask/<id>.png, DIR/metadata.csv). SAM checkpoints come from
segment-anything's official download location (`sam.checkpoints`), resumably, and are moved
to their final name only after their sha256 matches. Neither step ever leaves a half-written
file or folder at the final path: a checkpoint grows in `<name>.part` (kept for resuming),
the data set is unpacked into a temporary folder beside DIR and moved into place in one
rename.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from floodcache.sam.checkpoints import (
    CheckpointSpec,
    default_checkpoint_path,
    download_command,
    spec_of,
)
from floodcache.utils.hashing import BLOCK_SIZE, sha256_file

log = logging.getLogger(__name__)

KAGGLE_DATASET = "faizalkarim/flood-area-segmentation"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"
TIMEOUT_S = 60.0  # per socket operation: a stalled connection fails instead of hanging forever
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# URLError covers refused connections and DNS failures, the rest a drop or stall mid-body
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class DownloadError(RuntimeError):
    """A download that failed; the message says what to do next."""


class KaggleCredentialsMissing(DownloadError):
    """Kaggle refused to start: no credentials, or credentials it rejected."""


def _problem(path: Path, spec: CheckpointSpec) -> str | None:
    """What is wrong with `path` as a copy of `spec`, or None when it is a good copy."""
    size = path.stat().st_size
    if size != spec.size:
        return f"is {size} bytes, expected {spec.size}"
    digest = sha256_file(path)
    if spec.sha256 is None:
        log.warning(
            "no sha256 is known for %s, so %s was accepted on its size alone (%d bytes); "
            "its sha256 is %s",
            spec.filename,
            path,
            size,
            digest,
        )
        return None
    if digest != spec.sha256:
        return f"has sha256 {digest}, expected {spec.sha256}"
    return None


def download_checkpoint(
    model_type: str = "vit_b",
    checkpoint_dir: Path | str | None = None,
    progress: bool = True,
    base_url: str | None = None,
) -> Path:
    """Download `model_type`'s official SAM checkpoint and return its verified path.

    Skips the download when the file is already there and verifies. Resumes from
    `<name>.part` after an interruption. `base_url` replaces the official location with a
    mirror that serves the same file names.
    """
    spec = spec_of(model_type)
    target = default_checkpoint_path(model_type, checkpoint_dir)
    command = download_command(model_type, target.parent)
    if target.exists():
        problem = _problem(target, spec)
        if problem is None:
            log.info("%s is already there and verifies; skipping the download", target)
            return target
        raise DownloadError(
            f"{target} already exists but {problem}, so it is not the official SAM {model_type} "
            f"checkpoint. Delete or move it, then rerun:\n  {command}"
        )
    url = f"{base_url.rstrip('/')}/{spec.filename}" if base_url else spec.url
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    try:
        _fetch(url, part, spec.size, progress)
    except (OSError, http.client.HTTPException) as error:
        got = part.stat().st_size if part.exists() else 0
        if getattr(error, "errno", None) in _DISK_FULL:
            raise DownloadError(
                f"No space left on the disk while writing {part} ({got} of {spec.size} bytes); "
                f"{target} was not touched. Free at least {(spec.size - got) >> 20} MiB there "
                f"(or choose another --checkpoint-dir), then rerun the same command to resume "
                f"from {part}:\n  {command}"
            ) from error
        if not isinstance(error, _NETWORK_ERRORS):
            raise
        if not got:  # nothing came (offline, refused): no partial file to speak of
            raise DownloadError(
                f"Downloading {url} failed: {error}. Nothing was downloaded and {target} was "
                f"not written. Check the connection (or fetch the file by hand into "
                f"{target.parent}), then rerun:\n  {command}"
            ) from error
        raise DownloadError(
            f"Downloading {url} failed: {error}. {target} was not written; {got} of "
            f"{spec.size} bytes are kept in {part}. Check the connection, then rerun the same "
            f"command to resume from there:\n  {command}"
        ) from error
    problem = _problem(part, spec)
    if problem is not None:
        part.unlink()
        raise DownloadError(
            f"The SAM {model_type} checkpoint downloaded from {url} {problem}. The partial file "
            f"was deleted and {target} was not written. Rerun the same command to download "
            f"it again:\n  {command}\nIf it fails again, the file at that URL has changed."
        )
    os.replace(part, target)
    log.info("saved %s", target)
    return target


def _fetch(url: str, part: Path, size: int, progress: bool) -> None:
    """Grow `part` until it holds `size` bytes of `url`, resuming from its current size."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:  # cannot be a prefix of the file: start over
        part.unlink()
        have = 0
    if have < size:
        _stream(url, part, have, size, progress)


def _stream(url: str, part: Path, have: int, size: int, progress: bool) -> None:
    """Append `url`'s bytes from offset `have` to `part`, or rewrite it if Range is ignored."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if have and error.code == 416:  # nothing after `have`: the .part is whole; verify it
            return
        raise
    with response:
        if have and response.status != 206:  # the server sends the whole file: start over
            log.info("%s ignored the Range request; restarting from byte 0", url)
            have = 0
        declared = response.headers.get("Content-Length")
        if declared is not None and have + int(declared) != size:
            raise DownloadError(
                f"{url} is {have + int(declared)} bytes, not the {size} floodcache expects, so "
                "it was not downloaded: the file there has changed. If the new file is right, "
                "update CHECKPOINTS in floodcache/sam/checkpoints.py."
            )
        with (
            open(part, "ab" if have else "wb") as sink,
            tqdm(
                total=size,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while block := response.read(BLOCK_SIZE):
                sink.write(block)
                bar.update(len(block))
            if sink.tell() < size:  # urllib returns a short body silently when a connection drops
                raise ConnectionError("the connection closed before the whole file arrived")


def _holds_layout(folder: Path) -> bool:
    """True when `folder` has non-empty Image/ and Mask/ subfolders (the Kaggle layout)."""
    return all(
        (folder / name).is_dir() and any((folder / name).iterdir()) for name in ("Image", "Mask")
    )


def _layout_root(unpacked: Path) -> Path | None:
    """The shallowest folder under `unpacked` (itself included) that holds the Kaggle layout."""
    folders = [unpacked, *(p for p in unpacked.rglob("*") if p.is_dir())]
    return next((f for f in sorted(folders, key=lambda p: len(p.parts)) if _holds_layout(f)), None)


def _credentials_help(config_dir: str, data_dir: Path) -> str:
    legacy = "~/.kaggle/kaggle.json"
    if Path(config_dir).expanduser() != Path("~/.kaggle").expanduser():
        legacy += f" or {config_dir}/kaggle.json"  # where this kaggle version also looks
    return (
        f"Kaggle credentials are missing or were rejected, so {KAGGLE_DATASET} cannot be "
        "downloaded. Add them in one of these ways, then rerun the same command:\n"
        "  - an API token from https://www.kaggle.com/settings/api (Generate New Token): "
        "export KAGGLE_API_TOKEN=<token>, or save it to ~/.kaggle/access_token\n"
        f"  - a legacy API key: save kaggle.json as {legacy} (chmod 600), "
        "or export KAGGLE_USERNAME=<user> KAGGLE_KEY=<key>\n"
        "  - or log in once with: kaggle auth login\n"
        f"Or download the data set by hand from {KAGGLE_URL} and unpack it so that "
        f"{data_dir}/Image and {data_dir}/Mask exist."
    )


def _kaggle_api(data_dir: Path):
    """The `kaggle` package's authenticated API object.

    `import kaggle` authenticates at import time: kaggle 2.x prints its own help and carries
    on unauthenticated, 1.x raises or exits. Both are silenced here and turned into one message.
    """
    hidden = io.StringIO()
    try:
        with contextlib.redirect_stdout(hidden), contextlib.redirect_stderr(hidden):
            import kaggle
    except ImportError as error:
        missing = error.name or "kaggle"  # kaggle itself, or a package kaggle needs
        needed = "" if missing == "kaggle" else ", which the kaggle package needs,"
        raise DownloadError(
            f"The {missing} package{needed} is not installed: pip install {missing}, then rerun."
        ) from error
    except (Exception, SystemExit) as error:
        raise KaggleCredentialsMissing(_credentials_help("~/.kaggle", data_dir)) from error
    config_dir = str(getattr(kaggle.api, "config_dir", "~/.kaggle"))
    try:
        with contextlib.redirect_stdout(hidden):
            kaggle.api.authenticate()
    except SystemExit as error:  # kaggle's "no credentials" path calls exit(1)
        raise KaggleCredentialsMissing(_credentials_help(config_dir, data_dir)) from error
    except Exception as error:  # checking a token needs the network
        raise DownloadError(
            f"Could not check the Kaggle credentials: {error}. Check the connection and rerun."
        ) from error
    return kaggle.api


def download_dataset(data_dir: Path) -> Path:
    """Download the Kaggle flood data set into `data_dir` (Image/, Mask/, metadata.csv).

    Skips when `data_dir` already holds the layout. Refuses a non-empty `data_dir` without it
    rather than mixing files into it.
    """
    data_dir = Path(os.path.abspath(data_dir))  # its parent must be a real folder: "." has none
    if _holds_layout(data_dir):
        log.info("%s already holds Image/ and Mask/; skipping the download", data_dir)
        return data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DownloadError(
            f"{data_dir} is not empty but has no Image/ and Mask/ folders. Pass an empty or new "
            "folder with --data, or empty this one, then rerun."
        )
    api = _kaggle_api(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.download-", dir=data_dir.parent))
    try:
        _download_into(api, staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("unpacked %s into %s", KAGGLE_DATASET, data_dir)
    return data_dir


def _download_into(api, staging: Path, data_dir: Path) -> None:
    """Download and unpack the data set inside `staging`, then rename its root to `data_dir`."""
    try:
        api.dataset_download_files(KAGGLE_DATASET, path=str(staging), quiet=False, unzip=False)
    except Exception as error:  # kaggle raises requests' and its own errors: report them all
        raise DownloadError(
            f"Downloading {KAGGLE_DATASET} from Kaggle failed: {error}. Nothing was written to "
            f"{data_dir}; check the connection and rerun the same command."
        ) from error
    archives = sorted(staging.glob("*.zip"))
    if not archives:
        raise DownloadError(f"Kaggle returned no zip archive for {KAGGLE_DATASET}.")
    unpacked = staging / "unpacked"
    try:
        with zipfile.ZipFile(archives[0]) as archive:  # extractall drops absolute and ".." parts
            archive.extractall(unpacked)
    except zipfile.BadZipFile as error:
        raise DownloadError(
            f"Kaggle's archive for {KAGGLE_DATASET} is not a valid zip ({error}). Nothing was "
            f"written to {data_dir}; rerun the same command."
        ) from error
    root = _layout_root(unpacked)
    if root is None:
        found = sorted(p.name for p in unpacked.iterdir())
        raise DownloadError(
            f"The archive for {KAGGLE_DATASET} has no Image/ and Mask/ folders (it holds "
            f"{found}); the data set's layout may have changed. Nothing was written to {data_dir}."
        )
    if not (root / "metadata.csv").exists():  # some archives keep it beside a nested folder
        stray = sorted(unpacked.rglob("metadata.csv"), key=lambda p: len(p.parts))
        if stray:
            os.replace(stray[0], root / "metadata.csv")
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked by the caller
    os.replace(root, data_dir)
