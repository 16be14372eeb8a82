"""Writing outputs so that a crash never leaves a half-written file behind, into places checked
before any work starts.

A file is written under a temporary name in its destination folder and renamed when complete
(a rename within one file system is atomic); a folder likewise. Temporary names are hidden and
say whose they are (``.NAME.dkoar-partial-HOST-PID-RANDOM``): what a killed process left is
removed by the next write into the same folder, once no process of that number runs on this
computer.

Permissions: every output is created as any other program's file is, with the permissions the
user's umask leaves (0666 & ~umask for files, 0777 & ~umask for folders; 0644 and 0755 under the
usual umask 022, owner-only under 077). The site key alone is always 0600 (``pseudonym``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from .errors import DKOARError

PARTIAL_MARK = "dkoar-partial"


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _partial_prefix(name: str) -> str:
    return f".{name}.{PARTIAL_MARK}-{_host()}-{os.getpid()}-"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        if os.name != "posix":
            return True  # os.kill(pid, 0) would send Ctrl+C on Windows: keep the file rather
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError, ValueError):
            return True
        return True
    return psutil.pid_exists(pid)


def remove_stale_partials(folder: Path | str) -> int:
    """Remove the temporary files and folders that killed dkoar processes of this computer left in
    ``folder``; returns how many. Another computer's (a shared disk) and running ones are kept."""
    removed = 0
    try:
        entries = list(Path(folder).glob(f".*.{PARTIAL_MARK}-{_host()}-*"))
    except OSError:
        return 0
    for entry in entries:
        try:
            pid = int(entry.name.split(f".{PARTIAL_MARK}-", 1)[1].split("-")[1])
        except (IndexError, ValueError):
            continue
        if _running(pid):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _cannot_write(place: Path, exc: OSError) -> DKOARError:
    why = exc.strerror or str(exc)
    return DKOARError(f"{place}: cannot write there ({why}); choose another place for the output")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists; refused when that is a file (``path`` is below a file)."""
    place = path
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise DKOARError(f"{place}: is a file, so nothing can be written below it ({path}); choose another place "
                         "for the output")
    return place


def _new_entry(folder: Path, name: str, suffix: str, directory: bool, mode: int = 0o666) -> Path:
    """A new hidden temporary file or folder in ``folder`` (created exclusively; ``mode`` less the umask)."""
    for _ in range(100):
        candidate = folder / f"{_partial_prefix(name)}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                os.mkdir(candidate, 0o777)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise _cannot_write(folder, exc) from None
    raise DKOARError(f"{folder}: cannot make a temporary name there")


def _probe(folder: Path) -> None:
    """Refuse a folder no file can be created in (read-only file system, no permission, full disk).
    A real write is tried: permission bits say nothing to root or about a read-only mount."""
    os.unlink(_new_entry(folder, "probe", "", directory=False))


def check_output_file(path: Path | str, inputs: tuple = ()) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a place below a
    file, a folder where nothing can be created, or one of the command's ``inputs``. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise DKOARError(f"{path}: is a folder; give the name of the file to write")
    for other in inputs:
        if other is not None and _same_file(path, Path(other)):
            raise DKOARError(f"{path}: this command also reads or writes that file; give the output another name")
    _probe(_nearest_existing(path.parent))
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_output_folder(out_dir: Path | str) -> Path:
    """Refuse, before any work, an output folder that is a file, lies below a file or cannot be
    created or written to. Creates nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DKOARError(f"{out_dir}: exists and is not a folder")
    _probe(_nearest_existing(out_dir))
    return out_dir


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if folder.exists() and not folder.is_dir():
            raise DKOARError(f"{folder}: exists and is not a folder") from None
        _nearest_existing(folder)
        raise _cannot_write(folder, exc) from None


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise DKOARError(f"{path}: is a folder; give the name of the file to write")
    _make_folder(path.parent)
    remove_stale_partials(path.parent)
    # keep the file's suffixes so that writers choosing a format by extension still work
    tmp = _new_entry(path.parent, path.name, "".join(path.suffixes) or ".tmp", directory=False)
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` if the block succeeds. An
    existing ``path`` is refused, never replaced: it may hold what the user keeps."""
    path = Path(path)
    if path.exists():
        raise DKOARError(f"{path}: already exists; choose another output folder or remove it")
    with staging_folder(path.parent, path.name) as tmp:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError as exc:
            raise _cannot_write(path, exc) from None


@contextlib.contextmanager
def staging_folder(parent: Path | str, name: str = "run") -> Iterator[Path]:
    """A hidden temporary folder in ``parent`` (created if needed) for outputs that are moved into
    place when all are complete; removed afterwards, whatever happens."""
    parent = Path(parent)
    _make_folder(parent)
    remove_stale_partials(parent)
    tmp = _new_entry(parent, name, "", directory=True)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def create_exclusive(path: Path | str, data: bytes, mode: int = 0o666) -> bool:
    """Create ``path`` holding ``data``, complete or not at all; False (nothing written) when it
    exists. The data are written under a temporary name and then hard-linked to ``path``: a link,
    like O_EXCL, fails when the name exists, and nobody ever sees the file half-written. Where the
    file system has no hard links, ``path`` is created with O_EXCL and written (readers of such a
    file must allow for a moment in which it is still being written)."""
    path = Path(path)
    _make_folder(path.parent)
    remove_stale_partials(path.parent)
    tmp = _new_entry(path.parent, path.name, "", directory=False, mode=mode)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass  # no hard links here (some network and FAT file systems)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def prepare_output_folder(out_dir: Path) -> None:
    """Create the output folder, or refuse (DKOARError) when it cannot be made or written to."""
    out_dir = check_output_folder(out_dir)
    _make_folder(out_dir)


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
