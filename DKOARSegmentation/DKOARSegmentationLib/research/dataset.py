"""An nnU-Net v2 raw dataset from a cohort (and the clinicians' final contours of logged cases).

Writes ``DatasetNNN_Name/``: ``imagesTr/<case>_0000.nii.gz`` (the CT in Hounsfield units),
``labelsTr/<case>.nii.gz``, ``dataset.json`` (``channel_names`` CT, the labels by catalogue name)
and ``dkoar_dataset.json`` (what went in, what was left out and why, the structures' definitions).

Labels: nnU-Net needs consecutive values 0..N, so the chosen structures are numbered 1..N in
the catalogue's order; with the whole catalogue (1..34, and a site's added structures after them)
these are the catalogue's own numbers. A model's labels are mapped to structures by name, so the
names are what matters to ``dkoar segment``.

A case that lacks a chosen structure is left out of the dataset. nnU-Net's loss has no way to
leave one label out for one case (its ignore label works per voxel: ignoring the lacking
structure would mean ignoring every background voxel of the case), and training the case as it
is would teach that the structure is background there. So: left out, and reported with the
structures it lacks; choose fewer structures (``--structures``) to keep more cases.

Overlaps between structures are resolved in favour of the smaller one (``reference``). No PHI in
the dataset: case names are ``case_0001`` (cohort order) and ``log_0001`` (log order); no path,
UID, name or date of the source data is written into it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..errors import DKOARError
from ..progress import Progress
from ..structures.added import structure_definition
from ..structures.catalogue import Catalogue, Structure, default_catalogue
from ..structures.site_config import choose_structures
from .cohort import Cohort, CohortCase, RtstructEntry
from .learning_loop import logged_finals
from .names import NameMapper
from .reference import case_ct, reference_segmentation

DATASET_NAME = re.compile(r"^Dataset(\d{3})_[A-Za-z0-9_-]+$")
OVERLAP_RULE = "where structures overlap, the smaller structure keeps the voxels"
MISSING_RULE = "a case lacking a chosen structure is left out (nnU-Net would learn it as background there)"


@dataclass
class DatasetReport:
    folder: Path
    labels: dict[str, int]  # structure name -> value in the dataset
    cases: dict[str, dict] = field(default_factory=dict)  # case -> {"origin", "structures", ...}
    excluded: dict[str, str] = field(default_factory=dict)  # case -> why
    log: dict[str, int] = field(default_factory=dict)


@dataclass
class _Source:
    name: str
    cohort: Cohort
    case: CohortCase
    rtstructs: list[RtstructEntry] | None  # None: the case's clinician RTSTRUCTs
    origin: str


def _present(source: _Source, mapper: NameMapper) -> set[int]:
    rtstructs = source.rtstructs if source.rtstructs is not None else [rt for rt in source.case.rtstructs
                                                                     if not rt.automatic]
    found = set()
    for rt in rtstructs:
        for roi in rt.rois:
            structure = mapper.map(roi.name).structure if roi.contours else None
            if structure is not None:
                found.add(structure.label)
    return found


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    from ..output.label_maps import affine_to_sitk

    image = sitk.GetImageFromArray(array)
    affine_to_sitk(image, affine)
    sitk.WriteImage(image, str(path), useCompression=True)


def _sources(cohort: Cohort, include_log, catalogue: Catalogue, site_map, report: DatasetReport) -> list[_Source]:
    sources: list[_Source] = []
    replaced: set[str] = set()
    if include_log is not None:
        log_path, files = include_log
        match = logged_finals(log_path, files or cohort.root, catalogue, site_map)
        report.log = {"found": len(match.cases), "without_final": match.without_final,
                      "final_not_found": match.not_found, "without_ct": match.without_ct}
        for n, logged in enumerate(match.cases, start=1):
            sources.append(_Source(f"log_{n:04d}", logged.cohort, logged.case, [logged.final],
                                   f"correction log (final contours; model {logged.model})"))
            replaced.add(logged.case.series_uid)
    for case in cohort.cases:
        if case.series_uid in replaced:
            report.excluded[case.case_id] = "replaced by the clinician's final contours from the correction log"
        elif not case.usable:
            report.excluded[case.case_id] = f"its CT has {case.slices} slice(s) in the folder; a volume needs two or more"
        else:
            sources.append(_Source(case.case_id, cohort, case, None, "cohort"))
    return sources


def build_dataset(cohort: Cohort, out: Path | str, catalogue: Catalogue | None = None, names: list[str] | None = None,
                  include_log: tuple[Path, Path | None] | None = None, site_map: Path | str | None = None,
                  progress: Progress | None = None) -> DatasetReport:
    """Write the dataset (see the module docstring); ``include_log``: (correction log, folder of the
    final RTSTRUCTs and their CTs, default the cohort's folder)."""
    out = Path(out)
    if not DATASET_NAME.match(out.name):
        raise DKOARError(f"{out}: nnU-Net needs a dataset folder named DatasetNNN_Name (three digits, e.g. Dataset501_DKOAR)")
    if out.exists():
        raise DKOARError(f"{out}: already exists; choose another dataset number or remove it")
    catalogue = catalogue or default_catalogue()
    site_map = site_map or cohort.site_map or None
    mapper = NameMapper(catalogue, site_map)
    report = DatasetReport(out, {})
    sources = _sources(cohort, include_log, catalogue, site_map, report)
    present = {s.name: _present(s, mapper) for s in sources}
    if names:
        wanted: list[Structure] = list(choose_structures(catalogue, names))
    else:
        drawn = set().union(*present.values()) if present else set()
        wanted = [s for s in catalogue if s.label in drawn]
    if not wanted:
        raise DKOARError(f"{cohort.root}: no case has contours of a catalogue structure; map the names with --map")
    wanted_catalogue = Catalogue(wanted)
    report.labels = {s.name: n for n, s in enumerate(wanted, start=1)}
    lut = np.zeros(256, dtype=np.uint8)
    for s in wanted:
        lut[s.label] = report.labels[s.name]
    with atomic_directory(out) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for n, source in enumerate(sources):
            if progress is not None:
                progress.update(n / max(1, len(sources)), f"{source.name} ({n + 1}/{len(sources)})")
            lacking = [s.name for s in wanted if s.label not in present[source.name]]
            if not lacking:
                try:
                    ct = case_ct(source.cohort, source.case)
                    segmentation, ref = reference_segmentation(source.cohort, source.case, ct, mapper, wanted_catalogue,
                                                               source.rtstructs)
                except DKOARError as exc:
                    report.excluded[source.name] = f"cannot be read: {exc}"
                    continue
                drawn = set(np.unique(segmentation.labels).tolist())
                lacking = [s.name for s in wanted if s.label not in drawn]
            if lacking:
                report.excluded[source.name] = f"lacks {', '.join(lacking)}"
                continue
            _write_nifti(np.ascontiguousarray(ct.voxels), ct.affine, tmp / "imagesTr" / f"{source.name}_0000.nii.gz")
            _write_nifti(lut[segmentation.labels], ct.affine, tmp / "labelsTr" / f"{source.name}.nii.gz")
            report.cases[source.name] = {"origin": source.origin, "slices": int(ct.shape[0]),
                                         "spacing_mm": [round(v, 3) for v in ct.spacing[::-1]],
                                         "off_slice_contours": ref.off_slice_contours, "overlaps": ref.overlaps}
        if not report.cases:
            raise DKOARError(f"no case has every chosen structure ({', '.join(report.labels)}); "
                             + "; ".join(f"{k}: {v}" for k, v in list(report.excluded.items())[:5]))
        _write_descriptions(tmp, out.name, report, wanted, catalogue, cohort)
    return report


def _write_descriptions(folder: Path, name: str, report: DatasetReport, wanted: list[Structure],
                        catalogue: Catalogue, cohort: Cohort) -> None:
    base = {s.label for s in default_catalogue()}
    guidelines = getattr(catalogue, "guidelines", {})
    dataset = {
        "name": name,
        "description": f"dkoar dataset build: {len(report.cases)} cases, {len(wanted)} structures; {OVERLAP_RULE}.",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **report.labels},
        "numTraining": len(report.cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n", encoding="utf-8")
    details = {
        "format": "dkoar-dataset/1",
        "rules": {"overlaps": OVERLAP_RULE, "missing_structures": MISSING_RULE},
        "structures": [{"value": report.labels[s.name], "catalogue_label": s.label, "name": s.name,
                        "added": s.label not in base,
                        **({"definition": structure_definition(s, guidelines.get(s.name, ""))}
                           if s.label not in base else {})} for s in wanted],
        "cases": report.cases,
        "excluded": report.excluded,
        "correction_log": report.log,
        "cohort": {"cases": len(cohort.cases), "rtstructs_without_ct": len(cohort.without_ct)},
    }
    (folder / "dkoar_dataset.json").write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")


def report_lines(report: DatasetReport) -> list[str]:
    lines = [f"wrote {report.folder}: {len(report.cases)} cases, labels "
             + ", ".join(f"{v}={k}" for k, v in report.labels.items())]
    if report.log:
        lines.append("correction log: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.log.items()))
    for case, why in report.excluded.items():
        lines.append(f"  left out {case}: {why}")
    lines.append(f"rules: {OVERLAP_RULE}; {MISSING_RULE}")
    return lines
