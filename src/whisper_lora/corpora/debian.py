"""Fetch a Debian package's files without installing it: `apt-get download` + `dpkg-deb -x`
into a cache folder, once. Neither needs root nor changes the system."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import WhisperLoraError
from ..fileio import build_once
from ..models.cache import default_cache_dir


class FetchError(WhisperLoraError):
    """A package could not be fetched or unpacked."""


def corpus_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir() / "corpora"


def package_root(package: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder the package's files are unpacked into (its usr/... tree), fetched on first use."""
    target = corpus_cache(cache_dir) / package
    return build_once(target, lambda tmp: _fetch_into(package, tmp), done_file=".fetched")


def _fetch_into(package: str, folder: Path) -> None:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"{tool} not found: fetching {package} needs a Debian or Ubuntu machine "
                             f"(or unpack the package's .deb into {folder.parent / package} by hand)")
    with tempfile.TemporaryDirectory() as tmp:
        # apt's download user cannot write into root's temporary folder; it then downloads as
        # root with a warning, which is harmless, so the warning is not shown.
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if done.returncode != 0 or not debs:
            raise FetchError(f"apt-get download {package} failed: {done.stderr.strip()[-400:]}; check the "
                             "network and `apt-get update` (the package is in Debian bookworm and later)")
        unpack = subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(folder)], capture_output=True, text=True)
        if unpack.returncode != 0:
            raise FetchError(f"dpkg-deb -x {debs[0].name} failed: {unpack.stderr.strip()[-400:]}")
    (folder / ".fetched").write_text(package + "\n")
