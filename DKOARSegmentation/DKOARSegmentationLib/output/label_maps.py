"""Label maps in and out: NIfTI / NRRD through SimpleITK, Slicer's .seg.nrrd through slicerio.

Label values are catalogue numbers. Geometry is kept exactly: SimpleITK converts NIfTI's RAS to
LPS on reading and back on writing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DKOARError
from ..structures.catalogue import Catalogue, Structure, default_catalogue
from ..volume import Segmentation


def affine_to_sitk(image, affine: np.ndarray) -> None:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    image.SetDirection(tuple(float(v) for v in (affine[:3, :3] / spacing).ravel()))


def affine_from_sitk(image) -> np.ndarray:
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing(), dtype=float)
    affine[:3, 3] = image.GetOrigin()
    return affine


def write_labelmap_nifti(segmentation: Segmentation, path: Path | str) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(segmentation.labels.astype(np.uint8))
    affine_to_sitk(image, segmentation.affine)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def terminology(structure: Structure) -> dict:
    entry = {
        "contextName": "DKOARSegmentation head and neck organs at risk",
        "category": [structure.category.scheme, structure.category.value, structure.category.meaning],
        "type": [structure.type.scheme, structure.type.value, structure.type.meaning],
    }
    if structure.modifier is not None:
        entry["typeModifier"] = [structure.modifier.scheme, structure.modifier.value, structure.modifier.meaning]
    return entry


def write_seg_nrrd(segmentation: Segmentation, path: Path | str, catalogue: Catalogue | None = None) -> None:
    """A Slicer segmentation file: one segment per structure with name, colour and terminology,
    all in one layer (structures do not overlap in a label map)."""
    import slicerio

    present = set(np.unique(segmentation.labels).tolist())
    segments = []
    for s in segmentation.structures:
        segments.append({
            "id": s.name,
            "name": s.name,
            "labelValue": int(s.label),
            "layer": 0,
            "color": [round(c / 255.0, 6) for c in s.rgb],
            "terminology": terminology(s),
            "status": "completed" if s.label in present else "notstarted",
        })
    seg = {
        "voxels": np.ascontiguousarray(segmentation.labels.transpose(2, 1, 0)),  # slicerio: (i, j, k)
        "ijkToLPS": np.asarray(segmentation.affine, dtype=float),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), seg)


def read_labelmap(path: Path | str, catalogue: Catalogue | None = None) -> Segmentation:
    """A label map (NIfTI, NRRD, MHA, or a Slicer .seg.nrrd) in catalogue numbering."""
    path = Path(path)
    catalogue = catalogue or default_catalogue()
    if not path.exists():
        raise DKOARError(f"{path}: no such file")
    if path.name.endswith(".seg.nrrd"):
        return _read_seg_nrrd(path, catalogue)
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DKOARError(f"{path}: cannot read the label map ({str(exc).strip().splitlines()[-1]})") from None
    labels = sitk.GetArrayFromImage(image)
    if labels.ndim != 3:
        raise DKOARError(f"{path}: a label map must be 3D, this one has {labels.ndim} dimensions")
    values = np.unique(labels)
    unknown = [int(v) for v in values if v != 0 and catalogue.find_label(int(v)) is None]
    if unknown:
        raise DKOARError(f"{path}: label values {unknown} are not catalogue numbers (1-{catalogue.max_label})")
    return Segmentation(labels.astype(np.uint8), affine_from_sitk(image), tuple(catalogue), {"source": str(path)})


def _read_seg_nrrd(path: Path, catalogue: Catalogue) -> Segmentation:
    import slicerio

    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # slicerio raises plain exceptions for malformed headers
        raise DKOARError(f"{path}: cannot read the segmentation ({exc})") from None
    voxels = seg["voxels"]
    if voxels.ndim == 4:
        raise DKOARError(f"{path}: overlapping segments (several layers) cannot become one label map")
    voxels = voxels.transpose(2, 1, 0)
    labels = np.zeros(voxels.shape, dtype=np.uint8)
    found = set()
    for segment in seg["segments"]:
        structure = catalogue.find(segment.get("name", ""))
        if structure is None:
            raise DKOARError(f"{path}: segment {segment.get('name')!r} is not a structure of the catalogue")
        labels[voxels == segment["labelValue"]] = structure.label
        found.add(structure.label)
    # the structures the file has segments for (empty ones too: looked for, not found)
    structures = tuple(s for s in catalogue if s.label in found)
    return Segmentation(labels, np.asarray(seg["ijkToLPS"], dtype=float), structures, {"source": str(path)})
