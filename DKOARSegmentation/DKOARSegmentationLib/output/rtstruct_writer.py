"""Writing a DICOM RT Structure Set from a label map on a DICOM CT's grid.

Why by hand: the writers on PyPI place contours through voxel centres, average the slice
spacing, write DS values longer than 16 characters and leave out Type 2 attributes (see the
project's notes). This writer puts each contour on its own slice's ImagePositionPatient, along
voxel edges (exact round trip, see ``contours``), writes every Type 1 and 2 attribute of the RT
Structure Set IOD, and codes each ROI's identity from the catalogue.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import RTStructureSetStorage, generate_uid

from .. import __version__
from ..atomic import atomic_path
from ..errors import DKOARError
from ..structures.catalogue import Code, Structure
from ..volume import Segmentation, Volume
from .contours import polygons_for_slice
from .dicom_file import new_dicom_file

DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
MANUFACTURER = "DKOARSegmentation"
MAX_VALUE_BYTES = 65534  # longer ContourData cannot be written with explicit VR (16-bit length)


@dataclass
class RTStructOptions:
    """What the structure set says about itself.

    ``empty_structures``: "omit" leaves structures without voxels out; "keep" writes their ROI
    (name, colour, codes) without contours, so the planning system shows they were looked for.
    ``edited``: names of structures a person changed (ROIGenerationAlgorithm SEMIAUTOMATIC).
    """

    label: str = "DKOAR AI"
    description: str = ""
    model_name: str = "unknown model"
    model_version: str = ""
    empty_structures: str = "keep"
    edited: frozenset[str] = field(default_factory=frozenset)
    operator: str = ""
    series_description: str = "DKOAR organs at risk (AI, unapproved)"
    # Douglas-Peucker tolerance (at most 0.25 mm); a slice whose round trip it would break stays exact.
    # Off by default: on ~1 mm pixels voxel-edge polygons have nothing to drop at 0.25 mm beyond their
    # collinear points, which are always dropped.
    simplify_mm: float = 0.0
    keyholes: bool = True  # holes joined to their outer contour (read alike by union and even-odd readers)
    # structure name -> (ROIObservationLabel, ROIObservationDescription): the review guidance's flags
    observations: dict[str, tuple[str, str]] = field(default_factory=dict)


def _ds(value: float) -> str:
    # at most 16 characters; 3 decimals keep corners exact to 1 micrometre
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


_TRAILING_ZEROS = re.compile(r"\.?0+(?=\\|$)")
_NEGATIVE_ZERO = re.compile(r"(?<![\d.])-0(?=\\|$)")


def _ds_multi_value(values: np.ndarray) -> bytes:
    """The encoded value of a multi-valued DS element, each value as ``_ds`` writes it, padded to
    an even length. One string operation for the whole contour: tens of thousands of contour
    points make pydicom's per-value DS objects (validated one by one) the slowest step."""
    text = "\\".join([f"{v:.3f}" for v in values.tolist()])
    text = _NEGATIVE_ZERO.sub("0", _TRAILING_ZEROS.sub("", text))
    data = text.encode("ascii")
    return data + b" " if len(data) % 2 else data


def _raw_element(keyword: str, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)


def _code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning[:64]
    return item


def _copy(dst: Dataset, src, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(src, name, None)
        setattr(dst, name, value if value is not None else "")


def _character_set(header) -> str | list[str]:
    """The CT's SpecificCharacterSet when it is a valid one, else ISO_IR 100 (Latin-1, which holds the
    default repertoire): an empty or unknown value copied from a CT makes the RTSTRUCT invalid (Type
    1C, defined terms). A code-extension list may start with an empty value (the default repertoire)."""
    from pydicom.charset import python_encoding
    from pydicom.multival import MultiValue

    value = header.get("SpecificCharacterSet")
    values = [str(v).strip() for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
    known = [v != "" and v in python_encoding for v in values]
    if len(values) > 1 and values[0] == "":
        known[0] = True
    if value is None or not all(known):
        return "ISO_IR 100"
    return values[0] if len(values) == 1 else values


def structure_contours(mask: np.ndarray, ct: Volume, simplify_mm: float = 0.0,
                       keyholes: bool = True, offset: tuple[int, int, int] = (0, 0, 0)) -> list[tuple[int, np.ndarray]]:
    """(slice index, N x 3 LPS points) for every contour of a 3D mask on the CT grid, each on its
    own slice's ImagePositionPatient. ``mask`` may be a crop of the grid starting at ``offset``
    (k, j, i)."""
    refs = ct.dicom.slices if ct.dicom is not None else None
    col = ct.affine[:3, 0]
    row = ct.affine[:3, 1]
    tolerance_px = simplify_mm / max(ct.spacing[0], ct.spacing[1])
    k0, j0, i0 = offset
    out = []
    for kc in np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]:
        k = int(kc) + k0
        origin = np.asarray(refs[k].position) if refs is not None else ct.index_to_lps(np.array([0.0, 0.0, float(k)]))
        for poly in polygons_for_slice(mask[kc], tolerance_px, keyholes):
            points = origin + np.outer(poly[:, 0] + i0, col) + np.outer(poly[:, 1] + j0, row)
            out.append((k, points))
    return out


def build_rtstruct(ct: Volume, segmentation: Segmentation, options: RTStructOptions | None = None) -> FileDataset:
    options = options or RTStructOptions()
    if ct.dicom is None:
        raise DKOARError("an RTSTRUCT references the DICOM CT it was drawn on; load the CT from its DICOM folder, not from NIfTI/NRRD")
    if segmentation.labels.shape != ct.shape or not np.allclose(segmentation.affine, ct.affine, atol=1e-3):
        raise DKOARError("the label map is not on the CT's grid (shape or geometry differ)")
    if options.empty_structures not in ("keep", "omit"):
        raise DKOARError(f"empty_structures must be 'keep' or 'omit', not {options.empty_structures!r}")
    header = ct.dicom.header
    now = _dt.datetime.now()
    ds = new_dicom_file(RTStructureSetStorage, generate_uid())
    ds.SpecificCharacterSet = _character_set(header)
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    # Patient and General Study: copied from the CT (Type 2 kept, empty when the CT lacks them)
    _copy(ds, header, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"))
    _copy(ds, header, ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"))
    if getattr(header, "StudyDescription", None):
        ds.StudyDescription = header.StudyDescription
    # RT Series
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 901
    ds.SeriesDate = ds.InstanceCreationDate
    ds.SeriesTime = ds.InstanceCreationTime
    ds.SeriesDescription = options.series_description[:64]
    ds.OperatorsName = options.operator
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "DKOARSegmentation"
    ds.SoftwareVersions = [f"DKOARSegmentation {__version__}"[:64], f"{options.model_name} {options.model_version}".strip()[:64]]
    # Frame of Reference
    ds.FrameOfReferenceUID = ct.dicom.frame_of_reference_uid
    ds.PositionReferenceIndicator = getattr(header, "PositionReferenceIndicator", "") or ""
    # Structure Set
    ds.StructureSetLabel = options.label[:16]
    ds.StructureSetName = options.label[:64]
    ds.StructureSetDescription = (options.description or
                                  f"Organs at risk contoured automatically by {options.model_name} {options.model_version} "
                                  f"(DKOARSegmentation {__version__}); to be reviewed and approved by a clinician")[:1024]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime
    contour_images = Sequence()
    for ref in ct.dicom.slices:
        contour_images.append(_image_reference(ref))
    series_item = Dataset()
    series_item.SeriesInstanceUID = ct.dicom.series_instance_uid
    series_item.ContourImageSequence = contour_images
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study_item.ReferencedSOPInstanceUID = ct.dicom.study_instance_uid
    study_item.RTReferencedSeriesSequence = Sequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = ct.dicom.frame_of_reference_uid
    frame_item.RTReferencedStudySequence = Sequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_item])

    roi_seq, contour_seq, obs_seq = Sequence(), Sequence(), Sequence()
    labels = segmentation.labels
    from scipy import ndimage

    # one pass: each structure is traced inside its own box; no box, no voxels
    boxes = ndimage.find_objects(labels)
    roi_number = 0
    for structure in segmentation.structures:
        box = boxes[structure.label - 1] if structure.label <= len(boxes) else None
        has_voxels = box is not None
        if not has_voxels and options.empty_structures == "omit":
            continue
        roi_number += 1
        edited = structure.name in options.edited
        roi_seq.append(_structure_set_roi(roi_number, structure, ds, options, edited, now))
        cropped = (labels[box] == structure.label, tuple(sl.start for sl in box)) if has_voxels else None
        contour_seq.append(_roi_contour(roi_number, structure, cropped, ct,
                                        options))
        obs_seq.append(_observation(roi_number, structure, options.observations.get(structure.name)))
    ds.StructureSetROISequence = roi_seq
    ds.ROIContourSequence = contour_seq
    ds.RTROIObservationsSequence = obs_seq
    # Approval: an automatic result waits for a clinician
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _image_reference(ref) -> Dataset:
    """A ContourImageSequence item: the slice's SOP instance, and for a frame of an enhanced
    multi-frame CT also its frame (ReferencedFrameNumber, 1-based)."""
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    frame_number = getattr(ref, "frame_number", None)
    if frame_number is not None:
        item.ReferencedFrameNumber = int(frame_number)
    return item


def _structure_set_roi(number: int, s: Structure, ds: Dataset, options: RTStructOptions, edited: bool, now) -> Dataset:
    item = Dataset()
    item.ROINumber = number
    item.ReferencedFrameOfReferenceUID = ds.FrameOfReferenceUID
    item.ROIName = s.name
    item.ROIGenerationAlgorithm = "SEMIAUTOMATIC" if edited else "AUTOMATIC"
    model = f"{options.model_name} {options.model_version}".strip()
    item.ROIGenerationDescription = (f"{model}, edited by a clinician" if edited else model)[:64]
    algorithm = Dataset()
    family = Dataset()
    family.CodeValue = "113037"
    family.CodingSchemeDesignator = "DCM"
    family.CodeMeaning = "Image Processing"  # DICOM CID 7162 (Surface Processing Algorithm Families)
    algorithm.AlgorithmFamilyCodeSequence = Sequence([family])
    algorithm.AlgorithmName = options.model_name[:64]
    algorithm.AlgorithmVersion = (options.model_version or "unknown")[:64]
    item.ROIDerivationAlgorithmIdentificationSequence = Sequence([algorithm])
    return item


def _roi_contour(number: int, s: Structure, cropped: tuple[np.ndarray, tuple[int, int, int]] | None, ct: Volume,
                 options: RTStructOptions) -> Dataset:
    item = Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = list(s.rgb)
    if cropped is None:
        return item
    mask, offset = cropped
    contours = Sequence()
    for n, (k, points) in enumerate(structure_contours(mask, ct, options.simplify_mm, options.keyholes, offset), start=1):
        ref = ct.dicom.slices[k]
        c = Dataset()
        c.ContourImageSequence = Sequence([_image_reference(ref)])
        c.ContourGeometricType = "CLOSED_PLANAR"
        c.ContourNumber = n
        data = _ds_multi_value(points.ravel())
        if len(data) > MAX_VALUE_BYTES:
            raise DKOARError(f"{s.name}: a contour on slice {k + 1} has too many points for one DICOM value ({len(points)})")
        c.NumberOfContourPoints = len(points)
        c[Tag("ContourData")] = _raw_element("ContourData", "DS", data)
        # written as encoded, not decoded and re-validated value by value: pydicom (3.0) writes a
        # raw element as is when the item's original encoding is the file's (explicit VR little
        # endian, the item's default character set); otherwise it decodes it first, still correct
        c.set_original_encoding(False, True, default_encoding)
        contours.append(c)
    item.ContourSequence = contours
    return item


def _observation(number: int, s: Structure, note: tuple[str, str] | None = None) -> Dataset:
    item = Dataset()
    item.ObservationNumber = number
    item.ReferencedROINumber = number
    if note is not None:  # Type 3 attributes of the RT ROI Observations module
        item.ROIObservationLabel = note[0][:16]
        item.ROIObservationDescription = note[1][:1024]
    item.RTROIInterpretedType = s.rt_roi_type
    item.ROIInterpreter = ""
    identity = _code(s.type)
    if s.modifier is not None:
        identity.SegmentedPropertyTypeModifierCodeSequence = Sequence([_code(s.modifier)])
    item.RTROIIdentificationCodeSequence = Sequence([identity])
    item.SegmentedPropertyCategoryCodeSequence = Sequence([_code(s.category)])
    return item


def write_rtstruct(ct: Volume, segmentation: Segmentation, path: Path | str, options: RTStructOptions | None = None) -> Path:
    """Build the RTSTRUCT and write it to ``path`` (through a temporary file)."""
    ds = build_rtstruct(ct, segmentation, options)
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
