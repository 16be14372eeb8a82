"""Shared test data: small phantoms written as real DICOM series by the project's own writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from DKOARSegmentationLib.phantom import PhantomGrid, write_phantom
from DKOARSegmentationLib.structures.catalogue import default_catalogue

REPO = Path(__file__).resolve().parent.parent
# small enough for a quick suite, fine enough for the small structures: 250 mm field of view
SMALL_GRID = PhantomGrid(matrix=192, pixel_mm=1.3, slice_mm=3.0)
# the head and upper neck on 2 mm pixels, for tests that need a run but not every structure at its
# best: the demo model's run takes a third of its time on SMALL_GRID
QUICK_GRID = PhantomGrid(matrix=96, pixel_mm=2.0, slice_mm=3.0, z_min=-90.0, z_max=80.0)


@pytest.fixture(scope="session")
def catalogue():
    return default_catalogue()


@pytest.fixture(scope="session")
def phantom_factory(tmp_path_factory):
    """Write (once per session) a small phantom for a (seed, position)."""
    cache: dict = {}

    def make(seed: int = 3, position: str = "HFS", grid: PhantomGrid = SMALL_GRID):
        key = (seed, position, grid)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"phantom_{seed}_{position}")
            cache[key] = (out, write_phantom(out, seed=seed, position=position, grid=grid))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def small_phantom(phantom_factory):
    return phantom_factory(3, "HFS")


@pytest.fixture(scope="session")
def demo_result(phantom_factory, tmp_path_factory):
    """The demo model's run (``pipeline.segment.RunResult``, its output folder) on a small phantom,
    once per (seed, position) in a session: several tests read the same run; none may change it."""
    cache: dict = {}

    def run(seed: int = 3, position: str = "HFS"):
        if (seed, position) not in cache:
            from DKOARSegmentationLib.pipeline.segment import segment

            out, _ = phantom_factory(seed, position)
            folder = tmp_path_factory.mktemp(f"demo_{seed}_{position}") / "result"
            cache[(seed, position)] = (segment(out / "ct", folder, device="cpu"), folder)
        return cache[(seed, position)]

    return run


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs Debian's dicom3tools")
    return path
