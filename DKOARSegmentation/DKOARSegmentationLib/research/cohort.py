"""A cohort: every CT series under a folder with the RTSTRUCTs drawn on it, ROI names mapped.

``scan_cohort`` reads every file's header once (``input.series_scan``, any depth, any file names),
then each RTSTRUCT in full, and pairs it with its CT by, in this order: the series it references
(RTReferencedSeriesSequence), the series holding the slices its contours reference, the one CT
series with its frame of reference. What clinical structure sets do is recorded per RTSTRUCT, not
refused: empty ROIs (no contour), ROI numbers that are not 1..n, contours without image
references, slices referenced but missing from the CT, a reference to a series that is not there.
An RTSTRUCT whose CT is not in the folder is listed apart (its names still count).

``cohort.json`` keeps the paths (relative to the scanned folder) and series UIDs, so that a
dataset can be built from it later: it points at the data and belongs with it. Case ids
(``case_0001``...) follow the order of the series UIDs and carry nothing about the patient.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_path
from ..errors import DKOARError
from ..input.series_scan import FolderScan, scan_dicom_folder
from ..json_files import read_json_file
from ..structures.catalogue import Catalogue
from .names import NameMapper

COHORT_FORMAT = "dkoar-cohort/1"


@dataclass
class RoiEntry:
    number: int
    name: str
    structure: str | None  # catalogue name, None when unmapped or ignored
    how: str  # names.Mapping.how
    contours: int  # closed planar contours of three points or more


@dataclass
class RtstructEntry:
    path: str  # relative to the cohort's root
    manufacturer: str
    date_time: str  # StructureSetDate + StructureSetTime, for "the newest wins"
    automatic: bool  # every ROI AUTOMATIC: a model's own output, not a clinician's contours
    matched_by: str  # "referenced series", "referenced slices", "frame of reference", "" (no CT)
    referenced_slices: int
    missing_slices: int  # referenced slices that are not in the CT series found
    rois: list[RoiEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class CohortCase:
    case_id: str
    series_uid: str
    ct_files: list[str]  # relative to the cohort's root
    slices: int
    rtstructs: list[RtstructEntry] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """A volume to train or evaluate on: at least two slices."""
        return self.slices >= 2

    def structures(self) -> list[str]:
        """Catalogue structures with contours in a clinician's RTSTRUCT of this case."""
        found = {r.structure for rt in self.rtstructs if not rt.automatic for r in rt.rois
                 if r.structure and r.contours}
        return sorted(found)


@dataclass
class Cohort:
    root: Path
    cases: list[CohortCase]
    without_ct: list[RtstructEntry]
    site_map: str = ""
    files: dict = field(default_factory=dict)  # counts: dicom series, not DICOM, unreadable

    def rtstructs(self) -> list[RtstructEntry]:
        return [rt for case in self.cases for rt in case.rtstructs] + list(self.without_ct)

    def structure_counts(self, catalogue: Catalogue) -> dict[str, dict[str, int]]:
        """Per catalogue structure: cases with contours of it, of those the cases usable for training,
        and RTSTRUCTs with contours of it whose CT is not in the folder."""
        counts = {s.name: {"cases": 0, "usable": 0, "without_ct": 0} for s in catalogue}
        for case in self.cases:
            for name in case.structures():
                counts.setdefault(name, {"cases": 0, "usable": 0, "without_ct": 0})
                counts[name]["cases"] += 1
                counts[name]["usable"] += int(case.usable)
        for rt in self.without_ct:
            for name in {r.structure for r in rt.rois if r.structure and r.contours}:
                counts.setdefault(name, {"cases": 0, "usable": 0, "without_ct": 0})["without_ct"] += 1
        return counts

    def name_counts(self, how: tuple[str, ...]) -> dict[str, int]:
        """ROI names (as written) mapped in one of the ways ``how``, with the number of RTSTRUCTs using them."""
        counter: Counter = Counter()
        for rt in self.rtstructs():
            counter.update({r.name for r in rt.rois if r.how in how})
        return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0].lower())))

    def case(self, case_id: str) -> CohortCase:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise DKOARError(f"{case_id}: no such case in the cohort of {self.root}")


def _text(ds, name: str) -> str:
    return str(ds.get(name, "") or "")


def _referenced(ds) -> tuple[list[str], set[str], str]:
    """(referenced series UIDs, referenced SOP instance UIDs, frame of reference UID) of an RTSTRUCT."""
    series, slices, frame = [], set(), ""
    for ref_frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        frame = frame or _text(ref_frame, "FrameOfReferenceUID")
        for study in ref_frame.get("RTReferencedStudySequence", []):
            for ref_series in study.get("RTReferencedSeriesSequence", []):
                series.append(_text(ref_series, "SeriesInstanceUID"))
                slices.update(_text(i, "ReferencedSOPInstanceUID") for i in ref_series.get("ContourImageSequence", []))
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            slices.update(_text(i, "ReferencedSOPInstanceUID") for i in contour.get("ContourImageSequence", []))
    for roi in ds.get("StructureSetROISequence", []):
        frame = frame or _text(roi, "ReferencedFrameOfReferenceUID")
    slices.discard("")
    return [s for s in series if s], slices, frame


def _read_rtstruct(path: Path, root: Path, mapper: NameMapper) -> tuple[RtstructEntry, list[str], set[str], str]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged files
        raise DKOARError(f"{path}: cannot read the RTSTRUCT ({exc})") from None
    contours: dict[int, int] = {}
    with_images = without_images = 0
    for roi in ds.get("ROIContourSequence", []):
        n = 0
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) in ("CLOSED_PLANAR", "") and \
                    int(contour.get("NumberOfContourPoints", 0) or len(contour.get("ContourData", [])) // 3) >= 3:
                n += 1
                with_images += bool(contour.get("ContourImageSequence"))
                without_images += not contour.get("ContourImageSequence")
        number = int(roi.get("ReferencedROINumber", 0) or 0)
        contours[number] = contours.get(number, 0) + n
    rois, generation = [], []
    for item in ds.get("StructureSetROISequence", []):
        number, name = int(item.get("ROINumber", 0) or 0), _text(item, "ROIName").strip()
        mapping = mapper.map(name)
        rois.append(RoiEntry(number, name, mapping.structure.name if mapping.structure else None, mapping.how,
                             contours.get(number, 0)))
        generation.append(_text(item, "ROIGenerationAlgorithm").upper())
    notes = []
    numbers = [r.number for r in rois]
    if numbers != list(range(1, len(numbers) + 1)):
        notes.append(f"ROI numbers are not 1..{len(numbers)}: {', '.join(map(str, numbers))}")
    empty = [r.name for r in rois if r.contours == 0]
    if empty:
        notes.append(f"{len(empty)} empty ROI{'s' if len(empty) > 1 else ''} (no contour): {', '.join(empty)}")
    if without_images:
        notes.append(f"{without_images} of {with_images + without_images} contours reference no image")
    series, slices, frame = _referenced(ds)
    entry = RtstructEntry(
        path=str(path.relative_to(root)), manufacturer=" ".join(filter(None, (_text(ds, "Manufacturer"),
                                                                                _text(ds, "ManufacturerModelName")))),
        date_time=_text(ds, "StructureSetDate") + _text(ds, "StructureSetTime"),
        automatic=bool(generation) and all(g == "AUTOMATIC" for g in generation), matched_by="",
        referenced_slices=len(slices), missing_slices=0, rois=rois, notes=notes)
    return entry, series, slices, frame


def _frame_of(series) -> str:
    import pydicom

    try:
        return _text(pydicom.dcmread(series.files[0], stop_before_pixels=True, force=True), "FrameOfReferenceUID")
    except Exception:  # noqa: BLE001 - an unreadable header simply gives no match
        return ""


def _match(entry: RtstructEntry, series_uids: list[str], slices: set[str], frame: str, cts: dict,
           slice_owner: dict[str, str], frames: dict[str, str]) -> str | None:
    for uid in series_uids:
        if uid in cts:
            entry.matched_by = "referenced series"
            return uid
    owners = {slice_owner[s] for s in slices if s in slice_owner}
    if len(owners) == 1:
        entry.matched_by = "referenced slices"
        found = owners.pop()
    else:
        same_frame = [uid for uid in cts if frame and frames.get(uid) == frame]
        if len(same_frame) != 1:
            if series_uids:
                entry.notes.append("references a CT series that is not in the folder")
            return None
        entry.matched_by = "frame of reference"
        found = same_frame[0]
    if series_uids:
        entry.notes.append(f"references another series than its CT; matched by {entry.matched_by}")
    return found


def scan_cohort(folder: Path | str, catalogue: Catalogue, site_map: Path | str | None = None) -> Cohort:
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DKOARError(f"{folder}: no such folder")
    mapper = NameMapper(catalogue, site_map)
    scan: FolderScan = scan_dicom_folder(folder)
    cts = {uid: s for uid, s in scan.series.items() if s.modality == "CT" and s.is_image}
    slice_owner = {im.sop_instance_uid: uid for uid, s in cts.items() for im in s.images}
    frames = {uid: _frame_of(s) for uid, s in cts.items()}
    by_ct: dict[str, list[RtstructEntry]] = {}
    without_ct: list[RtstructEntry] = []
    unreadable = [(str(f.relative_to(folder)), why) for f, why in scan.unreadable]
    for series in (s for s in scan.series.values() if s.modality == "RTSTRUCT"):
        for file in series.files:
            try:
                entry, series_uids, slices, frame = _read_rtstruct(file, folder, mapper)
            except DKOARError as exc:
                unreadable.append((str(file.relative_to(folder)), str(exc).split(": ", 1)[-1]))
                continue
            uid = _match(entry, series_uids, slices, frame, cts, slice_owner, frames)
            if uid is None:
                without_ct.append(entry)
                continue
            present = {im.sop_instance_uid for im in cts[uid].images}
            entry.missing_slices = len(slices - present)
            if entry.missing_slices:
                entry.notes.append(f"{entry.missing_slices} of {len(slices)} referenced slices are not in the CT")
            by_ct.setdefault(uid, []).append(entry)
    cases = []
    for n, uid in enumerate(sorted(by_ct), start=1):
        series = cts[uid]
        rtstructs = sorted(by_ct[uid], key=lambda rt: (rt.date_time, rt.path))
        cases.append(CohortCase(f"case_{n:04d}", uid, [str(f.relative_to(folder)) for f in series.files],
                                len({im.sop_instance_uid or id(im) for im in series.images}), rtstructs))
    files = {"series": len(scan.series), "ct_series": len(cts), "not_dicom": scan.not_dicom,
             "unreadable": [{"file": f, "why": why} for f, why in unreadable]}
    return Cohort(folder, cases, without_ct, str(Path(site_map).resolve()) if site_map else "", files)


def cohort_document(cohort: Cohort, catalogue: Catalogue) -> dict:
    return {
        "format": COHORT_FORMAT,
        "root": str(cohort.root),
        "site_map": cohort.site_map,
        "files": cohort.files,
        "structures": cohort.structure_counts(catalogue),
        "unmapped": cohort.name_counts(("unmapped",)),
        "ignored": cohort.name_counts(("ignored",)),
        "cases": [asdict(case) | {"structures": case.structures()} for case in cohort.cases],
        "rtstructs_without_ct": [asdict(rt) for rt in cohort.without_ct],
    }


def write_cohort(cohort: Cohort, path: Path | str, catalogue: Catalogue) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(cohort_document(cohort, catalogue), indent=1) + "\n", encoding="utf-8")
    return path


def _rtstruct_from(item: dict) -> RtstructEntry:
    return RtstructEntry(**{**item, "rois": [RoiEntry(**r) for r in item.get("rois", [])]})


def read_cohort(path: Path | str) -> Cohort:
    path = Path(path)
    document = read_json_file(path, "cohort")
    if not isinstance(document, dict) or document.get("format") != COHORT_FORMAT:
        raise DKOARError(f"{path}: not a cohort file of dkoar cohort scan ({COHORT_FORMAT})")
    try:
        cases = [CohortCase(c["case_id"], c["series_uid"], list(c["ct_files"]), int(c["slices"]),
                            [_rtstruct_from(rt) for rt in c["rtstructs"]]) for c in document["cases"]]
        without = [_rtstruct_from(rt) for rt in document.get("rtstructs_without_ct", [])]
    except (KeyError, TypeError) as exc:
        raise DKOARError(f"{path}: a damaged cohort file ({exc}); scan the folder again") from None
    root = Path(document["root"])
    if not root.is_dir():
        raise DKOARError(f"{path}: the cohort's folder {root} is not there; scan the data where it is now")
    return Cohort(root, cases, without, document.get("site_map", ""), document.get("files", {}))
