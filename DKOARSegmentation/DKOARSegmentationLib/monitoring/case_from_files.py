"""Adding a finished case to the correction log from files (``dkoar log add``): the AI and the
final RTSTRUCTs, the CT they were drawn on, and optionally the correction times.

The CT's DICOM header gives the patient and study (kept only as keyed pseudonyms) and the CT
properties monitored; the AI RTSTRUCT gives the model's name and version when the caller does not.

The times file (``--times times.json``) is JSON of this shape, structure names as in the
catalogue (aliases accepted), every field optional::

    {"structures": {"Parotid_L": {"active_s": 42.5, "wall_s": 75.0, "edits": 3},
                    "Brainstem": {"active_s": 4.0, "wall_s": 6.0, "edits": 0}}}

``active_s``: seconds of correction excluding idle pauses; ``wall_s``: seconds from first to last
touch of the structure; ``edits``: number of editing operations.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DKOARError
from ..hashing import file_sha256
from ..input.ct_loader import require_dicom
from ..json_files import read_json_file
from ..review.guidance import ReviewGuidance
from ..structures.catalogue import Catalogue, default_catalogue
from ..volume import Volume
from .case_properties import case_keys, ct_properties
from .comparison import StructureComparison, compare_contour_sets
from .contour_sets import read_contour_set
from .correction_log import CorrectionLog, StructureResult
from .guidance_log import record_guidance
from .pseudonym import SiteKey

TIMING_FIELDS = ("active_s", "wall_s", "edits")
MAX_TIMES_BYTES = 1024 * 1024  # generous for the times of a few dozen structures


def model_from_rtstruct(path: Path | str) -> tuple[str, str]:
    """(model name, version) from the first ROI's derivation algorithm of an RTSTRUCT, if any."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - a missing model name is not an error; the reader reports bad files
        return "", ""
    for roi in ds.get("StructureSetROISequence", []):
        for algorithm in roi.get("ROIDerivationAlgorithmIdentificationSequence", []):
            name = str(algorithm.get("AlgorithmName", "") or "")
            version = str(algorithm.get("AlgorithmVersion", "") or "")
            if name:
                return name, "" if version == "unknown" else version
    return "", ""


def read_times(path: Path | str, catalogue: Catalogue | None = None) -> dict[str, dict]:
    """Structure name (catalogue spelling) -> {active_s, wall_s, edits} from a times file."""
    catalogue = catalogue or default_catalogue()
    path = Path(path)
    document = read_json_file(path, "times file", MAX_TIMES_BYTES)
    entries = document.get("structures") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise DKOARError(f'{path}: expected {{"structures": {{"Parotid_L": {{"active_s": .., "wall_s": .., "edits": ..}}}}}}')
    times: dict[str, dict] = {}
    for name, values in entries.items():
        structure = catalogue.find(name)
        if structure is None:
            raise DKOARError(f"{path}: {name!r} is not a structure of the catalogue")
        if not isinstance(values, dict):
            raise DKOARError(f"{path}: {name}: expected an object with active_s, wall_s, edits")
        unknown = set(values) - set(TIMING_FIELDS)
        if unknown:
            raise DKOARError(f"{path}: {name}: unknown fields {', '.join(sorted(unknown))} (allowed: {', '.join(TIMING_FIELDS)})")
        entry = {}
        for field in TIMING_FIELDS:
            value = values.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DKOARError(f"{path}: {name}.{field} must be a number >= 0, not {value!r}")
            if field == "edits" and int(value) != value:
                raise DKOARError(f"{path}: {name}.edits must be a whole number, not {value!r}")
            entry[field] = int(value) if field == "edits" else float(value)
        times[structure.name] = entry
    return times


@dataclass
class AddedCase:
    case_id: int
    results: dict[str, StructureComparison]
    model_name: str
    model_version: str


@dataclass
class ComparedCase:
    """A case compared and ready to log: all but the pseudonyms, which need the site key."""

    ct: Volume
    results: dict[str, StructureComparison]
    model_name: str
    model_version: str
    ai_contours_sha256: str
    final_contours_sha256: str


def compare_case(*, ai_path: Path, final_path: Path, ct: Volume, model_name: str | None = None,
                 model_version: str | None = None, catalogue: Catalogue | None = None) -> ComparedCase:
    """Compare the final with the AI contours on ``ct``: the work of a logged case, done before
    anything is written (a refused case leaves no key and no log behind)."""
    catalogue = catalogue or default_catalogue()
    require_dicom(ct, "a logged case", ct.source or "the CT")
    ai = read_contour_set(ai_path, ct, catalogue)
    final = read_contour_set(final_path, ct, catalogue)
    results = compare_contour_sets(ai, final)
    if model_name is None or model_version is None:
        found_name, found_version = model_from_rtstruct(ai_path)
        model_name = found_name if model_name is None else model_name
        model_version = found_version if model_version is None else model_version
    return ComparedCase(ct, results, model_name, model_version, file_sha256(ai_path), file_sha256(final_path))


def log_case(log: CorrectionLog, case: ComparedCase, key: SiteKey, *, site: str = "",
             times: dict[str, dict] | None = None, model_hash: str = "",
             started_at: _dt.datetime | str | None = None, guidance: ReviewGuidance | None = None) -> AddedCase:
    """Store a compared case with its times (and the review guidance its AI result came with): the
    site key's check, the case and its results in one transaction, so that processes adding cases to
    one log at once neither lose nor half-write one."""
    times = times or {}
    patient_key, study_key = case_keys(case.ct, key)
    per_structure = {name: StructureResult.from_parts(result, times.get(name)) for name, result in case.results.items()}
    for name, timing in times.items():
        per_structure.setdefault(name, StructureResult.from_parts(None, timing))
    with log.transaction():
        log.check_site_key(key.fingerprint)
        case_id = log.start_case(site=site, model_name=case.model_name, model_version=case.model_version,
                                 model_hash=model_hash, patient_key=patient_key, study_key=study_key,
                                 ct=ct_properties(case.ct), ai_contours_sha256=case.ai_contours_sha256,
                                 started_at=started_at, source="dkoar log add")
        log.finish_case(case_id, per_structure, final_contours_sha256=case.final_contours_sha256,
                        finished_at=started_at)
        if guidance is not None:
            record_guidance(log, case_id, guidance)
    return AddedCase(case_id, case.results, case.model_name, case.model_version)


def add_case(log: CorrectionLog, *, ai_path: Path, final_path: Path, ct: Volume, key: SiteKey, site: str = "",
             times: dict[str, dict] | None = None, model_name: str | None = None, model_version: str | None = None,
             model_hash: str = "", started_at: _dt.datetime | str | None = None,
             catalogue: Catalogue | None = None) -> AddedCase:
    """Compare the final with the AI contours on ``ct`` and log the case (metrics + times)."""
    case = compare_case(ai_path=ai_path, final_path=final_path, ct=ct, model_name=model_name,
                        model_version=model_version, catalogue=catalogue)
    return log_case(log, case, key, site=site, times=times, model_hash=model_hash, started_at=started_at)
