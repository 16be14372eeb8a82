"""Where the module's Resources folder (catalogue, demo model, UI) lies.

The core is installed from ``DKOARSegmentation/`` in development mode, so the Resources folder
of the Slicer module sits beside the package; ``DKOAR_RESOURCES`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DKOARError


def resources_dir() -> Path:
    override = os.environ.get("DKOAR_RESOURCES")
    path = Path(override) if override else Path(__file__).resolve().parent.parent / "Resources"
    if not (path / "structures.csv").is_file():
        raise DKOARError(
            f"the DKOARSegmentation Resources folder was not found at {path}; install the package "
            "in development mode (pip install -e .) or set DKOAR_RESOURCES"
        )
    return path


def demo_model_dir() -> Path:
    return resources_dir() / "DemoModel"
