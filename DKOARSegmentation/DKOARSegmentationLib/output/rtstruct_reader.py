"""Reading the contours of an RT Structure Set back onto a CT's grid.

Contours are matched to slices by their position along the slice normal (within a quarter of the
slice spacing); within one contour the even-odd rule decides which voxel centres are inside, and
the contours of one ROI on one slice combine by XOR (holes and islands).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pydicom

from ..errors import DKOARError
from ..volume import Volume
from .contours import polygons_to_mask

log = logging.getLogger(__name__)
MAX_COORDINATE_MM = 1e5  # 100 m: farther than any CT reaches; larger values are damage, not anatomy


def read_rtstruct_masks(path: Path | str, ct: Volume, off_slices: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """ROI name -> boolean mask on the CT's grid (k, j, i). Two ROIs of one name are joined (and
    a warning says so); a damaged ROI or contour is refused, naming it, never left out silently.

    A contour that lies on no slice of the CT is refused, unless ``off_slices`` is given: then it
    is left out and counted there per ROI name (clinical structure sets often reference slices that
    were not exported with the CT; the rest of the structure is still read)."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=True)  # some writers leave out the preamble and file meta
    except Exception as exc:  # pydicom raises many types for non-DICOM or corrupt files
        raise DKOARError(f"{path}: cannot read the RTSTRUCT ({' '.join(str(exc).split())})") from None
    try:
        return _masks(ds, path, ct, off_slices)
    except (ValueError, TypeError, EOFError, struct.error) as exc:  # pydicom parses an element when it is first used
        raise DKOARError(f"{path}: a damaged element in the RTSTRUCT ({' '.join(str(exc).split())}); export it "
                         "again from the planning system") from None


def _masks(ds, path: Path, ct: Volume, off_slices: dict[str, int] | None) -> dict[str, np.ndarray]:
    if getattr(ds, "Modality", "") != "RTSTRUCT":
        raise DKOARError(f"{path}: not an RTSTRUCT (modality {getattr(ds, 'Modality', '?')})")
    if ct.dicom is not None:
        frames = {str(getattr(r, "ReferencedFrameOfReferenceUID", "")) for r in ds.get("StructureSetROISequence", [])}
        frames.discard("")
        if frames and ct.dicom.frame_of_reference_uid not in frames:
            raise DKOARError(f"{path}: its frame of reference differs from the CT's; it was drawn on another scan")
    names = {}
    for n, r in enumerate(ds.get("StructureSetROISequence", []), start=1):
        number = _roi_number(r, "ROINumber", path, f"item {n} of StructureSetROISequence")
        names[number] = str(r.get("ROIName", "") or "").strip() or f"ROI {number}"
    in_plane = ct.affine[:3, :2]
    normal = np.cross(ct.affine[:3, 0], ct.affine[:3, 1])
    normal /= np.linalg.norm(normal)
    if ct.dicom is not None:
        slice_pos = np.array([np.dot(r.position, normal) for r in ct.dicom.slices])
        origins = np.array([r.position for r in ct.dicom.slices])
    else:
        origins = np.array([ct.index_to_lps(np.array([0.0, 0.0, float(k)])) for k in range(ct.shape[0])])
        slice_pos = origins @ normal
    tolerance = 0.25 * float(np.median(np.abs(np.diff(slice_pos)))) if len(slice_pos) > 1 else 0.5
    masks: dict[str, np.ndarray] = {}
    for n, roi in enumerate(ds.get("ROIContourSequence", []), start=1):
        number = _roi_number(roi, "ReferencedROINumber", path, f"item {n} of ROIContourSequence")
        name = names.get(number, f"ROI {number}")
        mask = np.zeros(ct.shape, dtype=bool)
        per_slice: dict[int, list[np.ndarray]] = {}
        for c, contour in enumerate(roi.get("ContourSequence", []), start=1):
            kind = str(getattr(contour, "ContourGeometricType", ""))
            if kind == "POINT":
                continue
            if kind not in ("CLOSED_PLANAR", ""):
                raise DKOARError(f"{path}: {name} has a {kind} contour; only CLOSED_PLANAR contours are read")
            points = _contour_points(contour, path, f"contour {c} of {name}")
            if len(points) < 3:
                continue
            position = float(np.mean(points @ normal))
            k = int(np.argmin(np.abs(slice_pos - position)))
            if abs(slice_pos[k] - position) > tolerance:
                if off_slices is not None:
                    off_slices[name] = off_slices.get(name, 0) + 1
                    continue
                lo, hi = float(slice_pos.min()), float(slice_pos.max())
                if lo - tolerance <= position <= hi + tolerance:
                    raise DKOARError(f"{path}: contour {c} of {name} lies between the CT's slices (at {position:.2f} "
                                     "mm along the slice normal); it was drawn on a CT with other slices")
                end = "first" if position < lo else "last"
                raise DKOARError(f"{path}: contour {c} of {name} lies beyond the CT's {end} slice (at {position:.1f} "
                                 f"mm along the slice normal, the CT spans {lo:.1f} to {hi:.1f} mm); it was drawn on "
                                 "another or a longer CT")
            # solve points - origin = in_plane @ (x, y) for the pixel coordinates
            xy, *_ = np.linalg.lstsq(in_plane, (points - origins[k]).T, rcond=None)
            per_slice.setdefault(k, []).append(xy.T)
        for k, polygons in per_slice.items():
            mask[k] = polygons_to_mask(polygons, ct.shape[1:])
        if name in masks:
            log.warning("%s: two ROIs are named %s; their contours are read as one structure", path, name)
            mask |= masks[name]
        masks[name] = mask
    return masks


def _roi_number(item, keyword: str, path: Path, where: str) -> int:
    """ROINumber or ReferencedROINumber of an item, the number that ties an ROI's name to its contours."""
    value = item.get(keyword)
    try:
        if value is None or str(value).strip() == "":
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise DKOARError(f"{path}: {where} has {'no' if value in (None, '') else 'a malformed'} {keyword}; the "
                         "structure set is damaged: export it again from the planning system") from None


def _contour_points(contour, path: Path, what: str) -> np.ndarray:
    """ContourData as N x 3 positions; refused when missing, not triplets of numbers, or not a position
    in a patient (NaN, infinite, or farther than any CT reaches)."""
    data = contour.get("ContourData")
    if data is None:
        raise DKOARError(f"{path}: {what} has no ContourData; the structure set is damaged: export it again")
    try:
        values = np.asarray(data if not isinstance(data, (str, bytes)) else [data], dtype=float).ravel()
    except (TypeError, ValueError):
        raise DKOARError(f"{path}: {what}: ContourData is not a list of numbers; the structure set is damaged: "
                         "export it again") from None
    if len(values) % 3:
        raise DKOARError(f"{path}: {what}: ContourData holds {len(values)} numbers, not (x, y, z) triplets; the "
                         "structure set is damaged: export it again")
    bad = ~np.isfinite(values) | (np.abs(values) > MAX_COORDINATE_MM)
    if bad.any():
        raise DKOARError(f"{path}: {what}: point {int(np.argmax(bad)) // 3 + 1} is not a position in the patient "
                         f"({values[np.argmax(bad)]:g} mm); the structure set is damaged: export it again")
    return values.reshape(-1, 3)
