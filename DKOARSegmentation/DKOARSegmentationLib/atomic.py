"""Writing outputs so that a crash never leaves a half-written file behind, into folders checked
before any work starts.

A file is written under a temporary name in its destination folder and renamed when complete
(a rename within one file system is atomic); a folder likewise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import DKOARError


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the file's suffixes so that writers choosing a format by extension still work
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix="".join(path.suffixes) or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def prepare_output_folder(out_dir: Path) -> None:
    """Create the output folder, or refuse (DKOARError) when it cannot be made or written to."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DKOARError(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DKOARError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out_dir, os.W_OK):
        raise DKOARError(f"{out_dir}: the output folder is not writable")


def new_folder_path(parent: Path | str, stem: str) -> Path:
    """``parent/stem-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... when taken): a time-stamped folder that
    replaces nothing written before. Not created."""
    parent = Path(parent)
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = parent / base, 1
    while folder.exists():
        n += 1
        folder = parent / f"{base}-{n}"
    return folder
