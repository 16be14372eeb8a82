"""Writing a Volume as a DICOM CT image series (the phantom's CT), with pydicom.

Stored values are unsigned with RescaleIntercept -1024, as many scanners write them, so that
readers must apply the rescale. UIDs derive from the phantom's seed and position, so that the
same phantom always gets the same identity.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
from pydicom.uid import CTImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from .. import __version__
from ..output.dicom_file import new_dicom_file
from ..volume import DicomSeriesInfo, SliceReference, Volume

PHANTOM_MANUFACTURER = "DKOARSegmentation phantom"  # tells our phantoms from any real CT

# Note: UIDs are generated with pydicom's generate_uid, whose default root is pydicom's own
# (1.2.826.0.1.3680043.8.498.); a department should configure its own root for production.


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def write_ct_series(volume: Volume, out_dir: Path | str, seed: int = 0, position: str = "HFS",
                    patient_name: str | None = None, patient_id: str | None = None) -> DicomSeriesInfo:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = [f"dkoar-phantom-{seed}-{position}"]
    study_uid = generate_uid(entropy_srcs=key + ["study"])
    series_uid = generate_uid(entropy_srcs=key + ["series"])
    frame_uid = generate_uid(entropy_srcs=key + ["frame"])
    today = _dt.date(2026, 1, 1) + _dt.timedelta(days=seed % 300)
    direction = volume.direction
    row_dir, col_dir = direction[:, 0], direction[:, 1]
    px, py, pz = volume.spacing
    slices = []
    for k in range(volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=key + ["image", str(k)])
        ipp = volume.index_to_lps(np.array([0.0, 0.0, float(k)]))
        ds = new_dicom_file(CTImageStorage, sop_uid)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
        ds.AccessionNumber = f"PH{seed:06d}"
        ds.Modality = "CT"
        ds.Manufacturer = PHANTOM_MANUFACTURER
        ds.ManufacturerModelName = "Synthetic head-and-neck phantom"
        ds.InstitutionName = "Synthetic"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Synthetic head and neck phantom (not a patient)"
        ds.SeriesDescription = f"Phantom CT {position}"
        ds.PatientName = patient_name or f"DKOAR^Phantom{seed}"
        ds.PatientID = patient_id or f"PHANTOM-{seed}"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.SliceThickness = _ds(pz)
        ds.KVP = "120"
        ds.SoftwareVersions = f"DKOARSegmentation {__version__}"
        ds.PatientPosition = position
        ds.Laterality = ""  # Type 2C: unpaired body part (head and neck)
        ds.BodyPartExamined = "HEADNECK"
        ds.ConvolutionKernel = "STANDARD"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = f"{seed}"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(ipp[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.PixelSpacing = [_ds(py), _ds(px)]  # row spacing (between rows), column spacing
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        stored = np.clip(volume.voxels[k].astype(np.int32) + 1024, 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(out_dir / f"CT_{k + 1:04d}.dcm", enforce_file_format=True)
        slices.append(SliceReference(str(CTImageStorage), sop_uid, tuple(float(v) for v in ipp)))
        if k == 0:
            header = ds.copy()
            del header.PixelData
    return DicomSeriesInfo(header=header, slices=tuple(slices))
