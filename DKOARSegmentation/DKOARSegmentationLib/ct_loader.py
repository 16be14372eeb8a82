"""Loading a planning CT into a Volume: a DICOM series folder, or a NIfTI / NRRD / MHA file.

DICOM slices are ordered by the projection of ImagePositionPatient on the slice normal (never by
InstanceNumber or file name), and each slice's own position and UIDs are kept for export.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DKOARError
from .volume import DicomSeriesInfo, SliceReference, Volume

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class SeriesSummary:
    uid: str
    modality: str
    description: str
    files: list[Path]


def load_ct(path: Path | str, series_uid: str | None = None) -> Volume:
    path = Path(path)
    if not path.exists():
        raise DKOARError(f"{path}: no such file or folder")
    if path.is_dir():
        return load_dicom_series(path, series_uid)
    if path.name.lower().endswith(IMAGE_SUFFIXES):
        return load_image_file(path)
    raise DKOARError(f"{path}: not a DICOM folder nor a NIfTI, NRRD or MHA image")


def load_image_file(path: Path) -> Volume:
    import SimpleITK as sitk

    from .labelmap_io import affine_from_sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DKOARError(f"{path}: cannot read the image ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DKOARError(f"{path}: a CT must be a 3D single-channel image")
    voxels = sitk.GetArrayFromImage(image)
    if not np.issubdtype(voxels.dtype, np.integer):
        voxels = voxels.astype(np.float32)
    return Volume(voxels, affine_from_sitk(image), None, str(path))


def scan_dicom_folder(folder: Path) -> tuple[dict[str, SeriesSummary], int]:
    """DICOM files under ``folder`` grouped by series, and the number of other files skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, SeriesSummary] = {}
    skipped = 0
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True,
                                 specific_tags=["SeriesInstanceUID", "Modality", "SeriesDescription"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            skipped += 1
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", ""))
        if not uid:
            skipped += 1
            continue
        entry = series.setdefault(uid, SeriesSummary(uid, str(getattr(ds, "Modality", "")),
                                                     str(getattr(ds, "SeriesDescription", "")), []))
        entry.files.append(file)
    return series, skipped


def load_dicom_series(folder: Path, series_uid: str | None = None) -> Volume:
    import pydicom

    series, skipped = scan_dicom_folder(folder)
    if skipped:
        log.info("%s: %d files that are not DICOM were ignored", folder, skipped)
    if not series:
        raise DKOARError(f"{folder}: no DICOM files found")
    if series_uid is not None:
        if series_uid not in series:
            raise DKOARError(f"{folder}: no series with UID {series_uid}")
        chosen = series[series_uid]
    else:
        cts = [s for s in series.values() if s.modality == "CT"]
        if not cts:
            found = ", ".join(sorted({s.modality or "?" for s in series.values()}))
            raise DKOARError(f"{folder}: no CT series found (found modality {found})")
        if len(cts) > 1:
            listing = "; ".join(f"{s.uid} ({s.description or 'no description'}, {len(s.files)} files)" for s in cts)
            raise DKOARError(f"{folder}: several CT series; choose one with --series: {listing}")
        chosen = cts[0]
    datasets = []
    for file in chosen.files:
        try:
            datasets.append((file, pydicom.dcmread(file)))
        except Exception as exc:  # pydicom raises many types for corrupt files
            raise DKOARError(f"{file}: cannot read this DICOM file ({exc})") from None
    return _volume_from_datasets(datasets, str(folder))


def _required(file: Path, ds, name: str):
    value = getattr(ds, name, None)
    if value is None or value == "":
        raise DKOARError(f"{file}: {name} is missing; the slice's geometry is unknown")
    return value


def _volume_from_datasets(datasets: list, source: str) -> Volume:
    if len(datasets) < 2:
        raise DKOARError(f"{source}: a CT series needs at least two slices, found {len(datasets)}")
    file0, ds0 = datasets[0]
    iop = np.array(_required(file0, ds0, "ImageOrientationPatient"), dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    entries = []
    for file, ds in datasets:
        ipp = np.array(_required(file, ds, "ImagePositionPatient"), dtype=float)
        if not np.allclose(np.array(_required(file, ds, "ImageOrientationPatient"), dtype=float), iop, atol=1e-4):
            raise DKOARError(f"{file}: its orientation differs from the other slices of the series")
        entries.append((float(ipp @ normal), file, ds, ipp))
    entries.sort(key=lambda e: e[0])
    positions = np.array([e[0] for e in entries])
    gaps = np.diff(positions)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise DKOARError(f"{entries[k + 1][1]}: two slices at the same position ({positions[k]:.2f} mm)")
    spacing_z = float(np.median(gaps))
    if np.max(np.abs(gaps - spacing_z)) > 0.01 * spacing_z:
        log.warning("%s: irregular slice spacing (%.3f to %.3f mm); contours keep each slice's own position",
                    source, gaps.min(), gaps.max())
    pixel_spacing = np.array(_required(file0, ds0, "PixelSpacing"), dtype=float)  # (row spacing, column spacing)
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    voxels = None
    slices = []
    for k, (_, file, ds, ipp) in enumerate(entries):
        if int(ds.Rows) != rows or int(ds.Columns) != cols:
            raise DKOARError(f"{file}: its size {ds.Rows}x{ds.Columns} differs from the series' {rows}x{cols}")
        if not np.allclose(np.array(_required(file, ds, "PixelSpacing"), dtype=float), pixel_spacing, atol=1e-4):
            raise DKOARError(f"{file}: its pixel spacing differs from the other slices of the series")
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # decoder errors come in many types
            raise DKOARError(f"{file}: cannot decode the pixel data ({exc})") from None
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        if voxels is None:
            exact = slope == 1 and intercept == int(intercept)
            voxels = np.empty((len(entries), rows, cols), dtype=np.int16 if exact else np.float32)
        if voxels.dtype == np.int16:
            voxels[k] = np.clip(pixels.astype(np.int32) + int(intercept), -32768, 32767)
        else:
            voxels[k] = pixels * slope + intercept
        slices.append(SliceReference(str(ds.SOPClassUID), str(ds.SOPInstanceUID), tuple(float(v) for v in ipp)))
    affine = np.eye(4)
    affine[:3, 0] = row_dir * pixel_spacing[1]
    affine[:3, 1] = col_dir * pixel_spacing[0]
    affine[:3, 2] = normal * spacing_z
    affine[:3, 3] = entries[0][3]
    header = ds0.copy()
    if "PixelData" in header:
        del header.PixelData
    return Volume(voxels, affine, DicomSeriesInfo(header=header, slices=tuple(slices)), source)
