"""Small DICOM series for the loader's tests, written with pydicom in any encoding a hospital sends.

``write_series`` writes a few 32x40 slices whose Hounsfield values are known (``expected_hu``), in
a chosen transfer syntax; options bend one thing at a time (modality, tilt, rescale, a missing
attribute). JPEG Lossless has no encoder in pydicom, so ``jpeg_lossless_sv1`` encodes it here
(ITU T.81 process 14, first-order prediction, one fixed Huffman table).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

ROWS, COLS = 32, 40
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
RTPLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RTDOSE = "1.2.840.10008.5.1.4.1.1.481.2"


def expected_hu(n: int, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """The HU of slice k (k from inferior to superior): air around a body whose values vary with k."""
    j, i = np.mgrid[0:rows, 0:cols]
    vol = np.full((n, rows, cols), -1000, dtype=np.int16)
    for k in range(n):
        body = (j - rows / 2) ** 2 / (rows / 2.5) ** 2 + (i - cols / 2) ** 2 / (cols / 2.5) ** 2 < 1
        vol[k][body] = (20 + 7 * k + 3 * i + 5 * j)[body]
        vol[k][rows // 2, cols // 2] = 1200 + k  # a bone voxel
    return vol


def _ds(value: float) -> str:
    return pydicom.valuerep.format_number_as_ds(float(value))


class SeriesIds:
    """UIDs shared by the slices of one series (and study / frame of reference)."""

    def __init__(self, study: str | None = None, frame: str | None = None):
        self.study = study or generate_uid()
        self.frame = frame or generate_uid()
        self.series = generate_uid()


def image_dataset(hu: np.ndarray, position, ids: SeriesIds, *, modality: str = "CT", sop_class: str = CTImageStorage,
                  orientation=(1, 0, 0, 0, 1, 0), spacing=(0.8, 0.7), thickness: float = 2.0,
                  slope: float = 1.0, intercept: float = -1024.0, signed: bool = False, number: int = 1,
                  image_type=("ORIGINAL", "PRIMARY", "AXIAL"), description: str = "Test CT") -> FileDataset:
    """One single-frame image whose pixels rescale to ``hu`` (stored = (hu - intercept) / slope)."""
    stored = np.round((hu.astype(np.float64) - intercept) / slope)
    stored = stored.astype(np.int16 if signed else np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.ImageType = list(image_type)
    ds.PatientName, ds.PatientID = "Test^Loader", "LOADER-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = ids.study, ids.series, ids.frame
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = [_ds(v) for v in orientation]
    ds.PixelSpacing = [_ds(v) for v in spacing]
    ds.SliceThickness = _ds(thickness)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
    ds.PixelData = stored.tobytes()
    return ds


def save(ds: FileDataset, path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` in ``syntax``; compressed syntaxes with pydicom's encoders (JPEG Lossless by hand)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = ds.pixel_array.copy() if "PixelData" in ds else None
    if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        little = syntax != ExplicitVRBigEndian
        if stored is not None and not little:
            ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
        pydicom.dcmwrite(path, ds, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=little,
                         force_encoding=True)
        return path
    if syntax == JPEGLosslessSV1:
        ds.PixelData = encapsulate([jpeg_lossless_sv1(stored.view(np.uint16) if stored.dtype == np.int16 else stored)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
    elif syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds.compress(syntax, stored)
    else:  # a syntax pydicom cannot encode: keep the bytes, claim the syntax (no decoder will read it)
        ds.PixelData = encapsulate([b"\xff\x0a" + stored.tobytes()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True, force_encoding=True)
    return path


def write_series(folder: Path, n: int = 6, *, syntax: str = ExplicitVRLittleEndian, slice_mm: float = 2.0,
                 origin=(-10.0, -8.0, 30.0), tilt_deg: float = 0.0, ids: SeriesIds | None = None,
                 names: str = "CT_{k:03d}.dcm", positions: list[float] | None = None, **options) -> list[Path]:
    """``n`` slices along +z (or at ``positions``), HU ``expected_hu(n)``; files in position order."""
    ids = ids or SeriesIds()
    hu = expected_hu(n)
    zs = positions if positions is not None else [k * slice_mm for k in range(n)]
    files = []
    for k, z in enumerate(zs):
        position = (origin[0], origin[1] + z * math.tan(math.radians(tilt_deg)), origin[2] + z)
        ds = image_dataset(hu[k], position, ids, number=k + 1, **options)
        files.append(save(ds, folder / names.format(k=k), syntax))
    return files


def write_enhanced_ct(path: Path, n: int = 6, slice_mm: float = 2.0, origin=(-10.0, -8.0, 30.0),
                      spacing=(0.8, 0.7), slope: float = 1.0, intercept: float = -1024.0) -> Path:
    """One Enhanced CT Image Storage file, frames stored from superior to inferior (reverse order)."""
    hu = expected_hu(n)
    order = list(range(n))[::-1]
    stored = np.stack([np.round((hu[k] - intercept) / slope).astype(np.uint16) for k in order])
    ids = SeriesIds()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PatientName, ds.PatientID = "Test^Enhanced", "LOADER-2"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = ids.study, ids.series, ids.frame
    ds.SeriesDescription = "Enhanced CT"
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    orient, measures, transform = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [_ds(v) for v in spacing]
    measures.SliceThickness = _ds(slice_mm)
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = _ds(slope), _ds(intercept), "HU"
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = Sequence()
    for k in order:
        item, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = [_ds(origin[0]), _ds(origin[1]), _ds(origin[2] + k * slice_mm)]
        item.PlanePositionSequence = Sequence([plane])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = stored.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_non_image(path: Path, modality: str, sop_class: str, ids: SeriesIds | None = None) -> Path:
    """An RTSTRUCT / RTPLAN header-only object of its own series (what a planning system exports beside the CT)."""
    ids = ids or SeriesIds()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids.study, generate_uid()
    ds.SeriesDescription = f"a {modality}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dose(path: Path, ids: SeriesIds | None = None) -> Path:
    """A small RTDOSE grid (multi-frame, GridFrameOffsetVector): an image, but never the CT."""
    ids = ids or SeriesIds()
    ds = image_dataset(np.zeros((4, 5), dtype=np.int16), (0, 0, 0), ids, modality="RTDOSE", sop_class=RTDOSE,
                       intercept=0.0)
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = 1
    ds.GridFrameOffsetVector = [0]
    ds.DoseGridScaling = "0.001"
    return save(ds, path)


# --- JPEG Lossless (process 14, selection value 1), written from ITU-T T.81 annex H -----------------

def _bits(value: int, length: int) -> str:
    return format(value, f"0{length}b") if length else ""


def jpeg_lossless_sv1(image: np.ndarray, precision: int = 16) -> bytes:
    """A baseline-free lossless JPEG codestream of a 2D unsigned image (predictor 1, Huffman table 0).

    Prediction (H.1.2.1): the first sample is predicted by 2**(P-1), the rest of the first line by
    the sample to the left, the first sample of other lines by the one above, others by the left.
    Differences are taken modulo 2**16 and coded as category SSSS (code of 5 bits, the same for all
    17 categories) followed by SSSS extra bits (none for SSSS 16).
    """
    rows, cols = image.shape
    x = image.astype(np.int64)
    pred = np.empty_like(x)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = x[0, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[1:, 1:] = x[1:, :-1]
    diff = (x - pred) % 65536
    diff[diff > 32768] -= 65536
    out = []
    for d in diff.ravel().tolist():
        ssss = 0 if d == 0 else abs(d).bit_length()
        out.append(_bits(ssss, 5))
        if 0 < ssss < 16:
            out.append(_bits(d if d > 0 else d + (1 << ssss) - 1, ssss))
    bits = "".join(out)
    bits += "1" * (-len(bits) % 8)
    data = bytearray()
    for n in range(0, len(bits), 8):
        byte = int(bits[n:n + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing
    sof = bytes([0xFF, 0xC3, 0, 11, precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17  # 17 codes of length 5
    dht = bytes([0xFF, 0xC4, 0, 2 + 1 + 16 + 17, 0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 1, 0, 0])  # Ns 1, Cs 1 table 0, Ss = predictor 1, Se 0, Ah/Al 0
    return b"\xff\xd8" + sof + dht + sos + bytes(data) + b"\xff\xd9"
