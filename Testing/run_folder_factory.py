"""A run's output folder as ``segment`` writes it (run.json with the review guidance, the .seg.nrrd)
made from a phantom's truth, damaged in a known way, without running a model: for the tests that
reopen a run (the MRML logic, the browser station)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.output.label_maps import write_seg_nrrd
from DKOARSegmentationLib.review.guidance import ReviewGuidance
from DKOARSegmentationLib.review.plausibility import check_segmentation
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from DKOARSegmentationLib.volume import Segmentation, Volume


def without(segmentation: Segmentation, name: str) -> Segmentation:
    """The segmentation with one structure deleted (its label still listed: a missing structure)."""
    label = default_catalogue().by_name(name).label
    labels = segmentation.labels.copy()
    labels[labels == label] = 0
    return Segmentation(labels, segmentation.affine, segmentation.structures)


def review_entry(segmentation: Segmentation, name: str, rank: int = 1) -> dict:
    """A review list entry (``review.uncertainty.review_list``'s fields) over the whole structure,
    centred on one of its voxels (axis 0 is the slice axis of the phantoms)."""
    mask = segmentation.labels == default_catalogue().by_name(name).label
    k, j, i = np.nonzero(mask)
    middle = len(k) // 2
    order = np.lexsort((i, j, k))
    point = segmentation.affine @ np.array([i[order[middle]], j[order[middle]], k[order[middle]], 1.0])
    z = sorted(float((segmentation.affine @ np.array([0, 0, s, 1.0]))[2]) for s in (k.min(), k.max()))
    return {"rank": rank, "structure": name, "first_slice": int(k.min()), "last_slice": int(k.max()),
            "centre_lps": [round(float(c), 3) for c in point[:3]], "z_mm": z, "band_mm": 2.5, "score": 1.0 / rank}


def write_run_folder(folder: Path, ct: Volume, segmentation: Segmentation, review=()) -> dict:
    """Write ``folder``/run.json and segmentation.seg.nrrd; the flags are the plausibility checks'
    on ``segmentation``. Returns the run record."""
    folder.mkdir(parents=True, exist_ok=True)
    write_seg_nrrd(segmentation, folder / "segmentation.seg.nrrd", default_catalogue())
    guidance = ReviewGuidance(check_segmentation(segmentation, ct), list(review))
    run = {"model": {"name": "a made-up run", "version": "0", "manifest_sha256": "0" * 64},
           "input": {"shape_kji": list(ct.shape)}, **guidance.as_record()}
    (folder / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return run
