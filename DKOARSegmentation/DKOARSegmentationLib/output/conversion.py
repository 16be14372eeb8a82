"""Converting between structure sets and label maps for users who bring their own contours.

``rtstruct_to_segmentation`` reads any RTSTRUCT onto a CT's grid and names its ROIs through the
catalogue (names and aliases); ``write_segmentation_file`` picks the format from the file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..structures.catalogue import Catalogue, Structure
from ..volume import Segmentation, Volume
from .label_maps import write_labelmap_nifti, write_seg_nrrd
from .rtstruct_reader import read_rtstruct_masks


@dataclass
class ConversionReport:
    unknown_rois: list[str] = field(default_factory=list)
    overlaps: dict[str, int] = field(default_factory=dict)  # "A/B" -> voxels both claimed
    empty_rois: list[str] = field(default_factory=list)


def rtstruct_to_segmentation(path: Path | str, ct: Volume, catalogue: Catalogue) -> tuple[Segmentation, ConversionReport]:
    """A label map in catalogue numbering. Where ROIs overlap, the smaller structure keeps the
    voxels (a large one painted last would hide it); overlaps are reported."""
    masks = read_rtstruct_masks(path, ct)
    report = ConversionReport()
    known = []
    for name, mask in masks.items():
        structure = catalogue.find(name)
        if structure is None:
            report.unknown_rois.append(name)
        elif not mask.any():
            report.empty_rois.append(name)
            known.append((structure, mask))
        else:
            known.append((structure, mask))
    labels, report.overlaps = paint_smallest_last(known, ct.shape)
    structures = tuple(sorted((s for s, _ in known), key=lambda s: s.label))
    return Segmentation(labels, ct.affine.copy(), structures, {"source": str(path)}), report


def paint_smallest_last(known: list[tuple[Structure, np.ndarray]], shape) -> tuple[np.ndarray, dict[str, int]]:
    """One label map from overlapping masks: the largest structure is painted first and the
    smallest last, so a small organ drawn inside or against a large one (a lens in the eye, the
    chiasm against the brain) keeps its voxels. Returns the map and the voxels each pair shared
    ("Larger/Smaller" -> count)."""
    labels = np.zeros(shape, dtype=np.uint8)
    overlaps: dict[str, int] = {}
    owner: dict[int, str] = {}
    for structure, mask in sorted(known, key=lambda sm: -int(sm[1].sum())):
        clash = labels[mask]
        for other in np.unique(clash[clash > 0]):
            overlaps[f"{owner[int(other)]}/{structure.name}"] = int(np.sum(clash == other))
        labels[mask] = structure.label
        owner[structure.label] = structure.name
    return labels, overlaps


def check_segmentation_file_name(path: Path | str) -> Path:
    """``path`` when its name says a format ``write_segmentation_file`` writes; refused otherwise."""
    path = Path(path)
    if not path.name.lower().endswith((".seg.nrrd", ".nii", ".nii.gz", ".nrrd", ".mha")):
        raise DKOARError(f"{path}: choose a .nii.gz, .nrrd, .mha or .seg.nrrd output")
    return path


def write_segmentation_file(segmentation: Segmentation, path: Path | str, catalogue: Catalogue) -> Path:
    path = check_segmentation_file_name(path)
    if path.name.lower().endswith(".seg.nrrd"):
        write_seg_nrrd(segmentation, path, catalogue)
    else:
        write_labelmap_nifti(segmentation, path)
    return path
