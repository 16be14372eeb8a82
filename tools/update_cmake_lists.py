#!/usr/bin/env python
"""Rewrite the file lists of the Slicer module's CMakeLists.txt from the files on disk.

``slicerMacroBuildScriptedModule`` wants every script and resource named one by one (it stops on
a listed file that does not exist, and packages only what is listed), while the core package
grows. This script rewrites the two lists in ``DKOARSegmentation/CMakeLists.txt``:

- ``MODULE_PYTHON_SCRIPTS``: ``DKOARSegmentation.py`` and every ``.py`` under ``DKOARSegmentationLib/``
  (the core), ``DKOARSegmentationMRML/`` (the MRML logic) and ``DKOARSegmentationQt/`` (panel sections);
- ``MODULE_PYTHON_RESOURCES``: every file under ``Resources/``;

leaving out ``__pycache__``, compiled files and whatever git ignores. The rest of the file is kept.

    python tools/update_cmake_lists.py            # rewrite
    python tools/update_cmake_lists.py --check    # exit 1 (and show the difference) if out of date
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE_DIR = REPO / "DKOARSegmentation"
MODULE_NAME = "DKOARSegmentation"
LIB_DIR = "DKOARSegmentationLib"
MRML_DIR = "DKOARSegmentationMRML"
QT_DIR = "DKOARSegmentationQt"
PACKAGE_DIRS = (LIB_DIR, MRML_DIR, QT_DIR)
RESOURCES_DIR = "Resources"
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".swp"}
SKIPPED_NAMES = {".DS_Store", "Thumbs.db", ".gitkeep"}


def _files_under(module_dir: Path, folder: str) -> list[str]:
    root = module_dir / folder
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(module_dir)
        if (not path.is_file() or SKIPPED_PARTS.intersection(rel.parts) or path.suffix in SKIPPED_SUFFIXES
                or path.name in SKIPPED_NAMES):
            continue
        found.append(rel.as_posix())
    return sorted(found)


def _git_ignored(module_dir: Path, paths: list[str]) -> set[str]:
    """The paths (relative to module_dir) that git ignores; none when git is not at hand."""
    if not paths:
        return set()
    try:
        done = subprocess.run(
            ["git", "check-ignore", "--no-index", "--stdin"], cwd=module_dir, input="\n".join(paths) + "\n",
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode not in (0, 1):  # 1: nothing ignored; 128: not a repository
        return set()
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def module_files(module_dir: Path = MODULE_DIR) -> tuple[list[str], list[str]]:
    """(scripts, resources) as CMake should list them, relative to the module folder."""
    lib = [p for folder in PACKAGE_DIRS for p in _files_under(module_dir, folder) if p.endswith(".py")]
    resources = _files_under(module_dir, RESOURCES_DIR)
    ignored = _git_ignored(module_dir, lib + resources)
    scripts = [f"{MODULE_NAME}.py"] + [p for p in lib if p not in ignored]
    return scripts, [p for p in resources if p not in ignored]


def _block(variable: str, items: list[str]) -> str:
    lines = [f"set({variable}"] + [f"  {item}" for item in items] + ["  )"]
    return "\n".join(lines)


def _replace_block(text: str, variable: str, items: list[str]) -> str:
    pattern = re.compile(rf"^set\({variable}\b.*?^\s*\)", re.MULTILINE | re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"update_cmake_lists: no 'set({variable} ... )' block found")
    return pattern.sub(lambda _m: _block(variable, items), text, count=1)


def render(cmake_text: str, scripts: list[str], resources: list[str]) -> str:
    for item in scripts + resources:
        if re.search(r"[\s;()\"$#\\]", item):
            raise SystemExit(f"update_cmake_lists: {item!r} has a character CMake lists cannot carry; rename it")
    text = _replace_block(cmake_text, "MODULE_PYTHON_SCRIPTS", scripts)
    return _replace_block(text, "MODULE_PYTHON_RESOURCES", resources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the lists are up to date")
    parser.add_argument("--module-dir", type=Path, default=MODULE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    cmake_path = args.module_dir / "CMakeLists.txt"
    old = cmake_path.read_text(encoding="utf-8")
    new = render(old, *module_files(args.module_dir))
    if args.check:
        if old == new:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), str(cmake_path), "on disk"))
        print(f"{cmake_path} is out of date: run python tools/update_cmake_lists.py")
        return 1
    if old != new:
        cmake_path.write_text(new, encoding="utf-8")
        print(f"updated {cmake_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
