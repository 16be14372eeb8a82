"""The station's own environment: the MRML logic's tests pass on its Slicer too.

The station runs the logic on slicer-core 5.11.0.6 (what trame-slicer 2.0.0 installs), the Slicer
module and .venv on 5.12.4.0: Testing/test_slicer_mrml.py, test_slicer_review.py,
test_slicer_run_folder.py and test_practice_mrml.py (the logic the station calls) run here under
.venv-station's Python. Two tests are left out there: the ones that run the model
(in this process and in a child process); the browser tests run the model through the same logic
on 5.11 end to end (child process, result loaded, corrected, finished, exported).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATION_PYTHON = REPO / ".venv-station" / "bin" / "python"
MODEL_RUNS = "not the_logic_runs_a_whole_case and not the_logic_runs_the_pipeline_in_a_child_process"

pytestmark = pytest.mark.skipif(not STATION_PYTHON.is_file(), reason=f"{STATION_PYTHON} is absent: make station-env")


def _station(code: str) -> str:
    return subprocess.run([str(STATION_PYTHON), "-c", code], capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip()


def test_the_station_environment_has_trame_slicer_on_slicer_core_5_11():
    versions = _station("import importlib.metadata as m; "
                        "print(*(m.version(p) for p in ('trame-slicer', 'slicer-core', 'vtk')))")
    assert versions.split() == ["2.0.0", "5.11.0.6", "9.6.0"]
    # and the core, the MRML logic and the station from this checkout
    where = _station("import DKOARSegmentationLib, DKOARSegmentationMRML, DKOARSegmentationStation as s; "
                     "print(s.__file__)")
    assert Path(where).is_relative_to(REPO)


@pytest.mark.slow
def test_the_mrml_tests_pass_on_the_stations_slicer_core():
    done = subprocess.run([str(STATION_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", MODEL_RUNS,
                           "Testing/test_slicer_mrml.py", "Testing/test_slicer_review.py",
                           "Testing/test_slicer_run_folder.py", "Testing/test_practice_mrml.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], done.stdout[-500:]
