"""A cohort case's CT and its clinicians' contours as one label map in catalogue numbering.

Read with the project's RTSTRUCT reader (``output.rtstruct_reader``: each contour on its own
slice, even-odd inside a contour, XOR between contours of one ROI on one slice). Rules:

- RTSTRUCTs whose every ROI is AUTOMATIC are a model's own output, never a reference: training on
  them would teach a model its own mistakes. They are skipped and reported.
- Several clinicians' RTSTRUCTs on one CT: per structure, the newest (StructureSetDate/Time) that
  has contours of it wins; two ROIs of one RTSTRUCT naming the same structure are joined.
- A contour on a slice that is not in the CT (referenced but not exported) is left out and counted.
- Overlaps: the smaller structure keeps the shared voxels (``output.conversion.paint_smallest_last``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DKOARError
from ..input.ct_loader import load_series
from ..input.series_scan import choose_series, scan_dicom_files
from ..output.conversion import paint_smallest_last
from ..output.rtstruct_reader import read_rtstruct_masks
from ..structures.catalogue import Catalogue, Structure
from ..volume import Segmentation, Volume
from .cohort import Cohort, CohortCase, RtstructEntry
from .names import NameMapper


@dataclass
class ReferenceReport:
    sources: dict[str, str] = field(default_factory=dict)  # structure -> RTSTRUCT (relative path) it came from
    off_slice_contours: int = 0
    overlaps: dict[str, int] = field(default_factory=dict)
    skipped_automatic: list[str] = field(default_factory=list)


def case_ct(cohort: Cohort, case: CohortCase) -> Volume:
    """The case's CT, read from the files the scan found."""
    files = [cohort.root / f for f in case.ct_files]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DKOARError(f"{missing[0]}: a CT file of {case.case_id} is gone; scan the cohort again")
    scan = scan_dicom_files(cohort.root, files)
    return load_series(choose_series(scan, case.series_uid), case.case_id)


def reference_segmentation(cohort: Cohort, case: CohortCase, ct: Volume, mapper: NameMapper,
                           wanted: Catalogue, rtstructs: list[RtstructEntry] | None = None
                           ) -> tuple[Segmentation, ReferenceReport]:
    """The structures of ``wanted`` that the case's RTSTRUCTs hold (``rtstructs``: these instead of
    the case's clinician RTSTRUCTs, e.g. a logged final structure set), as one label map."""
    report = ReferenceReport()
    if rtstructs is None:
        report.skipped_automatic = [rt.path for rt in case.rtstructs if rt.automatic]
        rtstructs = [rt for rt in case.rtstructs if not rt.automatic]
    chosen: dict[int, tuple[Structure, np.ndarray, str]] = {}
    for rt in sorted(rtstructs, key=lambda r: (r.date_time, r.path)):
        off: dict[str, int] = {}
        masks = read_rtstruct_masks(cohort.root / rt.path, ct, off_slices=off)
        report.off_slice_contours += sum(off.values())
        found: dict[int, tuple[Structure, np.ndarray]] = {}
        for name, mask in masks.items():
            mapped = mapper.map(name).structure
            structure = wanted.find_label(mapped.label) if mapped is not None else None
            if structure is None or not mask.any():
                continue
            if structure.label in found:
                mask = mask | found[structure.label][1]
            found[structure.label] = (structure, mask)
        for label, (structure, mask) in found.items():
            chosen[label] = (structure, mask, rt.path)  # sorted oldest first: the newest wins
    labels, report.overlaps = paint_smallest_last([(s, m) for s, m, _ in chosen.values()], ct.shape)
    report.sources = {s.name: path for s, _, path in sorted(chosen.values(), key=lambda v: v[0].label)}
    structures = tuple(s for s in wanted if s.label in chosen)
    return Segmentation(labels, ct.affine.copy(), structures, {"source": case.case_id}), report

