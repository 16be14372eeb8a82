"""An RTSTRUCT that says a series could not be contoured: one empty ROI named for the failure.

Sent to the same destinations as a result would be, it appears in the planning system beside the
CT, where the physician looks for the structure set, instead of the structure set silently never
coming. It references the CT slices that did arrive (read from their headers only, since the
failure may be that the CT cannot be loaded), holds no contour, and its description carries the
whole reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..output.rtstruct_writer import RTStructOptions, write_rtstruct
from ..structures.catalogue import Code, Structure
from ..volume import DicomSeriesInfo, Segmentation, SliceReference, Volume

# not an organ: a physical object marks the ROI as no anatomy (SNOMED CT, DICOM CID 7150)
_NOT_ANATOMY = Code("SCT", "260787004", "Physical object")


def failure_roi_name(title: str) -> str:
    return f"DKOAR FAILED {title}"[:64]  # ROIName is LO: 64 characters


def _failure_structure(title: str) -> Structure:
    return Structure(label=1, name=failure_roi_name(title), aliases=(), tg263="", laterality="",
                     category=_NOT_ANATOMY, type=_NOT_ANATOMY, modifier=None, rgb=(255, 0, 0), rt_roi_type="",
                     tolerance_mm=0.0, group="", core=False)


def _series_from_headers(folder: Path, series_uid: str) -> DicomSeriesInfo | None:
    from ..input.dicom_headers import read_header
    from ..input.series_scan import scan_dicom_folder

    series = scan_dicom_folder(folder).series.get(series_uid)
    if series is None or not series.images:
        return None
    images = [im for im in series.images if im.position is not None and not im.localizer] or series.images
    images = sorted(images, key=lambda im: im.position[2] if im.position else 0.0)
    header = read_header(images[0].file)[0]
    slices = tuple(SliceReference(im.sop_class_uid, im.sop_instance_uid,
                                  tuple(float(v) for v in (im.position or (0.0, 0.0, 0.0)))) for im in images)
    return DicomSeriesInfo(header=header, slices=slices)


def write_failure_rtstruct(path: Path | str, title: str, reason: str, model_name: str, model_version: str,
                           folder: Path | str | None = None, series_uid: str = "",
                           series: DicomSeriesInfo | None = None) -> Path | None:
    """Write the failure RTSTRUCT for the series (given, or read from ``folder``); None when no
    header of the series can be read (there is nothing to reference)."""
    if series is None and folder is not None:
        series = _series_from_headers(Path(folder), series_uid)
    if series is None or not getattr(series.header, "FrameOfReferenceUID", None):
        return None
    n = len(series.slices)
    ct = Volume(np.zeros((n, 1, 1), np.int16), np.eye(4), series)
    segmentation = Segmentation(np.zeros((n, 1, 1), np.uint8), np.eye(4), (_failure_structure(title),))
    options = RTStructOptions(label="DKOAR FAILED", description=f"Not contoured: {reason}"[:1024],
                              model_name=model_name, model_version=model_version, empty_structures="keep",
                              series_description=f"DKOAR FAILED: {title}"[:64])
    return write_rtstruct(ct, segmentation, path, options)
