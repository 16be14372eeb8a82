"""The learning loop: the clinicians' final contours of logged cases, back into a training set.

The correction log (``monitoring.correction_log``) keeps, per finished case, the SHA-256 of the
final contour file (the RTSTRUCT the clinician approved), never the contours or a path (paths
carry patient names). The final structure sets are therefore found where the department keeps
its exports: every RTSTRUCT under a folder is hashed and matched against the log, and its CT is
found as the cohort scan finds it. A logged case whose final file is not there, or that has no
final hash, is reported, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..hashing import file_sha256
from ..monitoring.correction_log import read_only_copy
from ..structures.catalogue import Catalogue
from .cohort import Cohort, CohortCase, RtstructEntry, scan_cohort


@dataclass
class LoggedCase:
    case: CohortCase  # the CT (in ``cohort``) the final structure set was drawn on
    final: RtstructEntry  # the clinician's final structure set
    cohort: Cohort
    model: str  # the model whose contours were corrected (name and version)


@dataclass
class LogMatch:
    cases: list[LoggedCase] = field(default_factory=list)
    without_final: int = 0  # finished cases whose log has no final contours hash
    not_found: int = 0  # finished cases whose final contour file is not under the folder
    without_ct: int = 0  # found, but its CT is not under the folder


def logged_finals(log_path: Path | str, files: Path | str, catalogue: Catalogue,
                  site_map: Path | str | None = None) -> LogMatch:
    """The finished cases of the log at ``log_path`` whose final RTSTRUCT lies under ``files``."""
    connection = read_only_copy(log_path)
    try:
        rows = connection.execute("SELECT final_contours_sha256, model_name, model_version FROM cases "
                                  "WHERE finished_at IS NOT NULL ORDER BY case_id").fetchall()
    finally:
        connection.close()
    match = LogMatch()
    wanted = {}
    for digest, model_name, model_version in rows:
        if not digest:
            match.without_final += 1
        else:
            wanted.setdefault(digest, f"{model_name} {model_version}".strip())
    if not wanted:
        return match
    cohort = scan_cohort(files, catalogue, site_map)
    found: dict[str, tuple[CohortCase | None, RtstructEntry]] = {}
    for case in cohort.cases:
        for rt in case.rtstructs:
            found.setdefault(file_sha256(cohort.root / rt.path), (case, rt))
    for rt in cohort.without_ct:
        found.setdefault(file_sha256(cohort.root / rt.path), (None, rt))
    for digest, model in wanted.items():
        if digest not in found:
            match.not_found += 1
            continue
        case, rt = found[digest]
        if case is None or not case.usable:
            match.without_ct += 1
            continue
        match.cases.append(LoggedCase(case, rt, cohort, model))
    return match
