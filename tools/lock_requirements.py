#!/usr/bin/env python
"""Re-resolve the pinned environments and write their lock files (``make lock``).

    python tools/lock_requirements.py

requirements/dev-lock.txt: torch 2.13.0 and the packages that must come without their declared
requirements (nnU-Net's, which would pull timm, torchvision and a CUDA torch) first, then
``pip install -e .[test]`` resolves the rest. requirements/station-lock.txt: the browser station's
environment (trame-slicer with its slicer-core 5.11, the core, pytest for the MRML tests).
requirements/dicompyler-lock.txt: dicompyler-core with pydicom < 3. Each environment is made afresh in a
temporary folder and frozen.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# installed with --no-deps before the resolver runs: nnU-Net v2 (its predictor is the reference of the
# parity tests), its network classes, and MONAI (needs only torch and numpy)
# and its training path (dkoar train): batchgeneratorsv2 (augmentation), seaborn (the training
# log's plot), scikit-learn with joblib, cloudpickle and narwhals (the 5-fold split)
NO_DEPS = ["dynamic-network-architectures==0.4.4", "nnunetv2==2.8.1", "acvl-utils==0.2.6", "batchgenerators==0.25.5",
           "blosc2==4.14.1", "httpx==0.28.1", "monai==1.6.1", "batchgeneratorsv2==0.3.6", "seaborn==0.13.2",
           "scikit-learn==1.9.1", "joblib==1.6.0", "cloudpickle==3.1.3", "narwhals==2.29.0"]
# the station: trame-slicer brings its own slicer-core; pytest runs Testing/test_slicer_mrml.py on it
STATION = [".[station]", "pytest", "pytest-timeout", "psutil"]
DICOMPYLER = ["pydicom<3", "dicompyler-core==0.5.6", "numpy<2.3", "shapely", "matplotlib", "six"]
# never pinned: torch is installed by the Makefile first; dataclasses is a Python 3.6 backport that
# rt-utils still declares
LEFT_OUT = {"torch", "dataclasses"}


def _environment(folder: Path, steps: list[list[str]]) -> list[str]:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    for step in steps:
        subprocess.run(pip + step, check=True, cwd=REPO)
    frozen = subprocess.run(pip + ["freeze", "--exclude-editable"], check=True, capture_output=True, text=True,
                            cwd=REPO).stdout.splitlines()
    return sorted((line for line in frozen if "==" in line and line.split("==")[0].lower() not in LEFT_OUT),
                  key=str.lower)


def _write(path: Path, pins: list[str]) -> None:
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    path.write_text("\n".join(header + pins) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}: {len(pins)} packages")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dkoar-lock-") as tmp:
        dev = _environment(Path(tmp) / "dev", [["install", "torch==2.13.0"], ["install", "--no-deps", *NO_DEPS],
                                               ["install", "-e", ".[test]"]])
        _write(REPO / "requirements" / "dev-lock.txt", dev)
        station = _environment(Path(tmp) / "station", [["install", "torch==2.13.0"],
                                                        ["install", "--no-deps", "dynamic-network-architectures==0.4.4"],
                                                        ["install", *STATION]])
        _write(REPO / "requirements" / "station-lock.txt", [p for p in station if not p.startswith("dkoar")])
        dicompyler = _environment(Path(tmp) / "dicompyler", [["install", *DICOMPYLER]])
        _write(REPO / "requirements" / "dicompyler-lock.txt", dicompyler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
