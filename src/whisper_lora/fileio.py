"""Files and folders written so that nothing a user made is lost: a reader sees the old version
or the new one, never half of one, and a failure leaves no temporary file behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so tools that read the format from the name
    still can) that becomes `path` when the block ends, or is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file owner-only; what is written here (transcripts, models) is the
    # user's to share, so it gets the permissions a plain open() would give it.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data, indent: int = 2) -> Path:
    """JSON with non-ASCII text as written (not \\u escapes); values JSON lacks become strings."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def replace_folder(src: Path, dst: Path) -> None:
    """Rename src to dst; an existing dst is moved aside first and removed only after the swap."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_once(target: Path, build: Callable[[Path], None], done_file: str) -> Path:
    """The folder `target`, built by build(tmp) the first time: it appears whole, by one rename,
    and `done_file` inside it says it is complete. Two processes building it at once both succeed."""
    if (target / done_file).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / done_file).is_file():  # not a concurrent twin that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask
