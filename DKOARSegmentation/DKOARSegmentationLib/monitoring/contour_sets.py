"""Structures read for comparison: a label map in catalogue numbering or an RTSTRUCT on its CT,
each structure kept as its bounding box and the mask within it, so that a full-size CT costs
little more than its structures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..structures.catalogue import Catalogue, Structure, default_catalogue
from ..volume import Segmentation, Volume


@dataclass
class ContourSet:
    """Structures on one grid, each kept as (bounding box, mask within it); box None = empty."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    items: dict[str, tuple[tuple[slice, ...] | None, np.ndarray | None]]
    structures: dict[str, Structure]

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        si, sj, sk = (float(v) for v in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))
        return (sk, sj, si)

    def mask_in(self, name: str, box: tuple[slice, ...]) -> np.ndarray:
        """The structure's mask within ``box`` (which must hold its own box)."""
        out = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
        own, crop = self.items.get(name, (None, None))
        if own is not None:
            out[tuple(slice(o.start - b.start, o.stop - b.start) for o, b in zip(own, box))] = crop
        return out


def contour_set_from_segmentation(segmentation: Segmentation, catalogue: Catalogue | None = None) -> ContourSet:
    """The structures present (with voxels) in a label map in catalogue numbering."""
    from scipy import ndimage

    catalogue = catalogue or default_catalogue()
    labels = segmentation.labels
    boxes = ndimage.find_objects(labels)
    items, structures = {}, {}
    for index, box in enumerate(boxes):
        if box is None:
            continue
        structure = catalogue.find_label(index + 1)
        if structure is None:
            raise DKOARError(f"label value {index + 1} is not a catalogue number (1-{catalogue.max_label})")
        items[structure.name] = (box, labels[box] == structure.label)
        structures[structure.name] = structure
    return ContourSet(np.asarray(segmentation.affine, dtype=float), tuple(labels.shape), items, structures)


def contour_set_from_masks(masks: dict[str, np.ndarray], affine: np.ndarray, catalogue: Catalogue | None = None
                           ) -> tuple[ContourSet, list[str]]:
    """ROI name -> mask (e.g. from an RTSTRUCT), named through the catalogue; ROIs that name no
    catalogue structure are returned apart. Two ROIs naming one structure are joined."""
    from scipy import ndimage

    catalogue = catalogue or default_catalogue()
    items, structures, unknown = {}, {}, []
    shape = None
    joined: dict[str, np.ndarray] = {}
    for roi, mask in masks.items():
        structure = catalogue.find(roi)
        if structure is None:
            unknown.append(roi)
            continue
        shape = mask.shape
        structures[structure.name] = structure
        joined[structure.name] = joined[structure.name] | mask if structure.name in joined else mask
    for name, mask in joined.items():
        box = ndimage.find_objects(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))
        box = box[0] if box else None
        items[name] = (box, mask[box] if box is not None else None)
    if shape is None:
        shape = next(iter(masks.values())).shape if masks else (0, 0, 0)
    return ContourSet(np.asarray(affine, dtype=float), tuple(shape), items, structures), unknown


_LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def read_contour_set(path: Path | str, ct: Volume | None = None, catalogue: Catalogue | None = None) -> ContourSet:
    """A label map (catalogue numbering) or an RTSTRUCT (needs the CT it was drawn on)."""
    from ..output.label_maps import read_labelmap

    path = Path(path)
    catalogue = catalogue or default_catalogue()
    if not path.exists():
        raise DKOARError(f"{path}: no such file")
    if path.is_dir():
        raise DKOARError(f"{path}: a folder; give an RTSTRUCT file or a label map file")
    if path.name.lower().endswith(_LABELMAP_SUFFIXES):
        return contour_set_from_segmentation(read_labelmap(path, catalogue), catalogue)
    if ct is None:
        raise DKOARError(f"{path}: an RTSTRUCT is read on the CT it was drawn on; give the CT with --ct")
    from ..output.rtstruct_reader import read_rtstruct_masks

    contours, unknown = contour_set_from_masks(read_rtstruct_masks(path, ct), ct.affine, catalogue)
    if not contours.structures:
        raise DKOARError(f"{path}: none of its ROIs ({', '.join(unknown) or 'none'}) names a catalogue structure")
    return contours

