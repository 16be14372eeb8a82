"""Which files a client may name: only what lies inside the folders the server was given.

A path from a client (a browser's text field, a request) is taken relative to one of the allowed
roots, resolved with every symbolic link followed, and refused unless the result still lies inside
that root: ``..`` cannot climb out, an absolute path elsewhere is refused, and a symbolic link
inside the root that points outside it is refused too. The messages name the path as the client
gave it, never the resolved target.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DKOARError


def inside(root: Path | str, candidate: Path | str) -> bool:
    """Whether ``candidate`` (resolved, links followed) lies inside ``root`` (resolved)."""
    root, candidate = Path(os.path.realpath(root)), Path(os.path.realpath(candidate))
    return candidate == root or root in candidate.parents


def resolve_inside(given: str, roots: dict[str, Path], must_exist: bool = True) -> Path:
    """The real path of ``given`` (relative to the first root, or absolute) when it lies inside one
    of ``roots`` (name -> folder); a DKOARError naming the allowed folders otherwise."""
    text = (given or "").strip()
    where = " or ".join(f"the {name} folder" for name in roots)
    if not text:
        raise DKOARError(f"give a path inside {where}")
    if "\x00" in text:
        raise DKOARError(f"{text!r}: not a valid path")
    first = next(iter(roots.values()))
    path = Path(text).expanduser()
    candidate = path if path.is_absolute() else Path(first) / path
    real = Path(os.path.realpath(candidate))
    if not any(inside(root, real) for root in roots.values()):
        raise DKOARError(f"{text}: outside {where}; only files there can be opened")
    if must_exist and not real.exists():
        raise DKOARError(f"{text}: no such file or folder in {where}")
    return real


def outside_files(root: Path | str, files) -> list[Path]:
    """The files (of a folder scan) that resolve outside ``root``: symbolic links leading out."""
    return [Path(f) for f in files if not inside(root, f)]
