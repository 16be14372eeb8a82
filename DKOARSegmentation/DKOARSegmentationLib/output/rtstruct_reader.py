"""Reading the contours of an RT Structure Set back onto a CT's grid.

Contours are matched to slices by their position along the slice normal (within a quarter of the
slice spacing); within one contour the even-odd rule decides which voxel centres are inside, and
the contours of one ROI on one slice combine by XOR (holes and islands).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from ..errors import DKOARError
from ..volume import Volume
from .contours import polygons_to_mask


def read_rtstruct_masks(path: Path | str, ct: Volume, off_slices: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """ROI name -> boolean mask on the CT's grid (k, j, i).

    A contour that lies on no slice of the CT is refused, unless ``off_slices`` is given: then it
    is left out and counted there per ROI name (clinical structure sets often reference slices that
    were not exported with the CT; the rest of the structure is still read)."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, force=True)  # some writers leave out the preamble and file meta
    except Exception as exc:  # pydicom raises many types for non-DICOM or corrupt files
        raise DKOARError(f"{path}: cannot read the RTSTRUCT ({exc})") from None
    if getattr(ds, "Modality", "") != "RTSTRUCT":
        raise DKOARError(f"{path}: not an RTSTRUCT (modality {getattr(ds, 'Modality', '?')})")
    if ct.dicom is not None:
        frames = {str(getattr(r, "ReferencedFrameOfReferenceUID", "")) for r in ds.get("StructureSetROISequence", [])}
        frames.discard("")
        if frames and ct.dicom.frame_of_reference_uid not in frames:
            raise DKOARError(f"{path}: its frame of reference differs from the CT's; it was drawn on another scan")
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
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
    for roi in ds.get("ROIContourSequence", []):
        name = names.get(int(roi.ReferencedROINumber), f"ROI {roi.ReferencedROINumber}")
        mask = np.zeros(ct.shape, dtype=bool)
        per_slice: dict[int, list[np.ndarray]] = {}
        for contour in roi.get("ContourSequence", []):
            kind = str(getattr(contour, "ContourGeometricType", ""))
            if kind == "POINT":
                continue
            if kind not in ("CLOSED_PLANAR", ""):
                raise DKOARError(f"{path}: {name} has a {kind} contour; only CLOSED_PLANAR contours are read")
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            if len(points) < 3:
                continue
            k = int(np.argmin(np.abs(slice_pos - float(np.mean(points @ normal)))))
            if abs(slice_pos[k] - float(np.mean(points @ normal))) > tolerance:
                if off_slices is None:
                    raise DKOARError(f"{path}: a contour of {name} lies between the CT's slices")
                off_slices[name] = off_slices.get(name, 0) + 1
                continue
            # solve points - origin = in_plane @ (x, y) for the pixel coordinates
            xy, *_ = np.linalg.lstsq(in_plane, (points - origins[k]).T, rcond=None)
            per_slice.setdefault(k, []).append(xy.T)
        for k, polygons in per_slice.items():
            mask[k] = polygons_to_mask(polygons, ct.shape[1:])
        masks[name] = mask
    return masks
