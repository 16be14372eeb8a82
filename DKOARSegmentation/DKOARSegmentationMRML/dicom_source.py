"""A CT volume node's DICOM files, as the core reads them.

A volume loaded from DICOM carries the SOPInstanceUIDs of its slices in the node attribute
``DICOM.instanceUIDs``; a DICOM database gives the file of each (``fileForInstance``). In Slicer
that is ``slicer.dicomDatabase`` (a ctkDICOMDatabase); a front end without one (the browser
station) and the tests use ``DicomFolderIndex``, the same lookup over the files of a folder.

The core then reads the real files, so that an RTSTRUCT or DICOM SEG references the real CT
series and slices. A volume that did not come from DICOM is handed to the core as a NRRD file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

import slicer

from DKOARSegmentationLib.input.ct_loader import load_ct, require_dicom
from DKOARSegmentationLib.volume import DicomSeriesInfo, Volume

from .geometry import volume_node_affine_lps

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


class DicomFileLookup(Protocol):
    """What is asked of a DICOM database: the file of a SOP instance ('' when unknown)."""

    def fileForInstance(self, sopInstanceUID: str) -> str: ...


class DicomFolderIndex:
    """The DICOM files under a folder, by SOPInstanceUID (headers read once, never the pixels); or
    those of a folder already scanned (``scan``, a core FolderScan)."""

    def __init__(self, folder: Path | str | None = None, scan=None):
        if scan is None:
            from DKOARSegmentationLib.input.series_scan import scan_dicom_folder

            scan = scan_dicom_folder(folder)
        self.files = {image.sop_instance_uid: str(image.file)
                      for series in scan.series.values() for image in series.images}

    def fileForInstance(self, sopInstanceUID: str) -> str:
        return self.files.get(sopInstanceUID, "")


def default_database() -> DicomFileLookup | None:
    """Slicer's DICOM database, when the application has one."""
    return getattr(slicer, "dicomDatabase", None)


def mark_as_dicom(volume_node, ct: Volume) -> None:
    """Record on a volume node made from a core DICOM ``Volume`` which SOP instances it shows (as
    Slicer's DICOM module does), so that exports reference them."""
    if ct.dicom is not None:
        volume_node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(s.sop_instance_uid for s in ct.dicom.slices))


def dicom_files(volume_node, database: DicomFileLookup | None) -> list[str] | None:
    """The files of the volume's DICOM instances, in the attribute's order; None when the volume
    was not loaded from DICOM, there is no database, or a file is no longer there."""
    uids = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids or database is None:
        return None
    files = [database.fileForInstance(uid) for uid in uids]
    return files if all(f and os.path.isfile(f) for f in files) else None


def core_input(volume_node, work_dir: Path | str, database: DicomFileLookup | None) -> Path:
    """The CT as the core reads it, written into ``work_dir``: a copy of its DICOM files when it
    came from DICOM, else a NRRD. The NRRD is written with a storage node of its own rather than
    slicer.util.saveNode, which would point the volume's storage node at the temporary file."""
    work_dir = Path(work_dir)
    files = dicom_files(volume_node, database)
    if files is not None:
        folder = work_dir / "dicom"
        folder.mkdir()
        for n, f in enumerate(files):
            shutil.copyfile(f, folder / f"{n:05d}.dcm")
        return folder
    path = work_dir / "ct.nrrd"
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.UseCompressionOff()
    if not storage.WriteData(volume_node):
        raise OSError(f"could not write the volume {volume_node.GetName()} to {path}")
    return path


def header_volume(volume_node, database: DicomFileLookup | None) -> Volume:
    """The CT's geometry and, when it came from DICOM, its first slice's header (no pixels), as a
    core Volume: enough for the log's CT properties and pseudonyms, without loading the series."""
    import numpy as np
    import pydicom

    files = dicom_files(volume_node, database)
    dicom = DicomSeriesInfo(pydicom.dcmread(files[0], stop_before_pixels=True), ()) if files else None
    return Volume(np.zeros((1, 1, 1), dtype=np.int16), volume_node_affine_lps(volume_node), dicom,
                  volume_node.GetName())


def dicom_ct(volume_node, what: str, database: DicomFileLookup | None, with_headers: bool = False):
    """The volume's DICOM series as the core's Volume and, ``with_headers``, its slice headers in
    k order (a DICOM SEG needs them); refused clearly when the volume did not come from DICOM."""
    import tempfile

    from DKOARSegmentationLib.output.dicom_seg import read_source_datasets

    with tempfile.TemporaryDirectory(prefix="DKOAR-export-") as work:
        path = core_input(volume_node, work, database)
        ct = require_dicom(load_ct(path), what, volume_node.GetName())
        headers = read_source_datasets(path, ct) if with_headers else None
    return ct, headers
