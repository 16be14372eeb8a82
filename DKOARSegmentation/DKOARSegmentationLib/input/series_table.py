"""The series of a data folder as a front end lists them for the user to choose one (the browser
station's table; ``dkoar series`` prints the same series as text).

CT series first, localisers after. A series that cannot be contoured (a localiser, a structure set, a dose) is
listed with the reason and cannot be chosen, and so is one with a file that a symbolic link leads
outside the folder: a front end opens nothing outside the folders it was given.
"""

from __future__ import annotations

from pathlib import Path

from ..serving.paths import outside_files
from .series_scan import FolderScan, SeriesSummary


def series_table(scan: FolderScan, root: Path | str) -> tuple[list[SeriesSummary], list[dict]]:
    """The series in the table's order, and one row per series: index, modality, slices, thickness,
    description, note (why it cannot be chosen, else empty) and openable. No UID: the rows are
    shown in a browser and go through its state."""
    series = sorted(scan.series.values(), key=lambda s: (s.modality != "CT", s.is_localizer, s.number, s.description))
    rows = []
    for n, entry in enumerate(series):
        if outside_files(root, entry.files):
            note = "files outside the data folder"
        elif not entry.is_image or entry.is_localizer:
            note = "not a CT to contour"
        else:
            note = ""
        rows.append({"index": n, "modality": entry.modality or "?", "slices": entry.slices,
                     "thickness": f"{entry.slice_thickness:g} mm" if entry.slice_thickness else "?",
                     "description": entry.description or "(no description)", "note": note, "openable": not note})
    return series, rows
