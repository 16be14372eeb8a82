"""DICOM Segmentation (binary) of a label map, with highdicom, and reading it back.

Each structure is one segment with its catalogue name and coded identity (category, type and
laterality modifier), algorithm AUTOMATIC (SEMIAUTOMATIC when a person edited it). The source
images are the CT series the label map was drawn on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..errors import DKOARError
from ..structures.catalogue import Code, Structure
from ..volume import Segmentation, Volume


def _concept(code: Code):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning[:64])


def _description(number: int, s: Structure, algorithm, edited: bool):
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=s.name,
        segmented_property_category=_concept(s.category),
        segmented_property_type=_concept(s.type),
        algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if edited
                        else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id=s.name,
    )
    desc.RecommendedDisplayCIELabValue = list(_rgb_to_dicom_lab(s.rgb))
    if s.modifier is not None:
        modifier = Dataset()
        modifier.CodeValue = s.modifier.value
        modifier.CodingSchemeDesignator = s.modifier.scheme
        modifier.CodeMeaning = s.modifier.meaning
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = Sequence([modifier])
    return desc


def _rgb_to_dicom_lab(rgb) -> tuple[int, int, int]:
    """sRGB to DICOM's scaled CIELab (PS3.3 C.10.7.1.1)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, dtype=float).reshape(1, 1, 3) / 255.0)[0, 0]
    return (int(round(lab[0] * 65535 / 100)), int(round((lab[1] + 128) * 65535 / 255)),
            int(round((lab[2] + 128) * 65535 / 255)))


def write_dicom_seg(ct: Volume, source_datasets: list, segmentation: Segmentation, path: Path | str,
                    model_name: str = "DKOARSegmentation", model_version: str = __version__,
                    edited: frozenset[str] = frozenset()) -> Path:
    """``source_datasets``: the CT's slices (pydicom datasets, pixel data not needed) in the
    volume's k order."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if ct.dicom is None:
        raise DKOARError("a DICOM SEG references the DICOM CT it was drawn on; load the CT from its DICOM folder")
    if segmentation.labels.shape != ct.shape:
        raise DKOARError("the label map is not on the CT's grid")
    uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    if uids != [r.sop_instance_uid for r in ct.dicom.slices]:
        raise DKOARError("the source datasets are not the CT's slices in order")
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name[:64], version=model_version[:64] or "unknown",
                                                   family=codes.cid7162.ArtificialIntelligence)
    present = [s for s in segmentation.structures if np.any(segmentation.labels == s.label)]
    if not present:
        raise DKOARError("the label map has no structure to write")
    numbering = np.zeros(256, dtype=np.uint8)
    for n, s in enumerate(present, start=1):
        numbering[s.label] = n
    pixel_array = numbering[segmentation.labels]
    seg = hd.seg.Segmentation(
        source_images=source_datasets,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, s, algorithm, s.name in edited) for n, s in enumerate(present, start=1)],
        series_instance_uid=hd.UID(),
        series_number=902,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="DKOARSegmentation",
        manufacturer_model_name="DKOARSegmentation",
        software_versions=f"DKOARSegmentation {__version__}",
        device_serial_number="0",
        series_description="DKOAR organs at risk (AI)",
        omit_empty_frames=True,
    )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def read_dicom_seg(path: Path | str, ct: Volume) -> dict[str, np.ndarray]:
    """Segment label -> mask on the CT's grid."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    uids = [r.sop_instance_uid for r in ct.dicom.slices]
    out = {}
    for number in seg.segment_numbers:
        label = seg.get_segment_description(number).segment_label
        frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number],
                                                    assert_missing_frames_are_empty=True)
        out[label] = frames[..., 0].astype(bool)
    return out


def read_source_datasets(folder: Path | str, ct: Volume) -> list:
    """The CT's slice headers (no pixel data) from its folder, in the volume's k order."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    wanted = {r.sop_instance_uid for r in ct.dicom.slices}
    found = {}
    for file in Path(folder).rglob("*"):
        if not file.is_file():
            continue
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        uid = str(getattr(ds, "SOPInstanceUID", ""))
        if uid in wanted:
            found[uid] = ds
    missing = wanted - set(found)
    if missing:
        raise DKOARError(f"{folder}: {len(missing)} slices of the CT series were not found again")
    return [found[r.sop_instance_uid] for r in ct.dicom.slices]
