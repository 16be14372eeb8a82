"""From a model's labels to catalogue structures.

Model labels map through the catalogue's names and aliases. A merged left/right label
(``Parotid_LR``) is split by patient side: +x in LPS is the patient's left, whatever the patient
position or array layout, and the midline is the centre of the patient's body. Labels that map to
nothing are reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DKOARError
from ..input.body import body_midline_x
from ..volume import Segmentation, Volume
from .catalogue import Catalogue, Structure


@dataclass
class LabelMapping:
    direct: dict[int, Structure] = field(default_factory=dict)
    merged: dict[int, tuple[Structure, Structure]] = field(default_factory=dict)  # (left, right)
    unmapped: dict[int, str] = field(default_factory=dict)
    missing: list[Structure] = field(default_factory=list)  # catalogue structures the model lacks
    excluded: dict[int, str] = field(default_factory=dict)  # labels of structures the site configuration left out
    order: dict[int, int] = field(default_factory=dict)  # structure label -> position in the catalogue

    @property
    def structures(self) -> tuple[Structure, ...]:
        """The structures the model provides, in the catalogue's order (a site's order)."""
        found = list(self.direct.values()) + [s for pair in self.merged.values() for s in pair if s is not None]
        return tuple(sorted(found, key=lambda s: (self.order.get(s.label, len(self.order)), s.label)))


def _merged_pair(name: str, catalogue: Catalogue) -> tuple[Structure | None, Structure | None] | None:
    """(left, right) of a merged label; a side the site configuration left out is None."""
    stem = name[:-2] if name.upper().endswith("LR") else None
    if not stem:
        return None
    stem = stem.rstrip("_")
    excluded = getattr(catalogue, "excluded", None)
    sides = []
    for suffix, laterality in (("_L", "L"), ("_R", "R")):
        s = catalogue.find(stem + suffix)
        if s is None and excluded is not None and excluded.find(stem + suffix) is not None:
            sides.append(None)
            continue
        if s is None or s.laterality != laterality:
            return None
        sides.append(s)
    return sides[0], sides[1]


def map_model_labels(model_labels: dict[int, str], catalogue: Catalogue) -> LabelMapping:
    mapping = LabelMapping()
    for value, name in sorted(model_labels.items()):
        if value == 0:
            continue
        structure = catalogue.find(name)
        if structure is not None:
            mapping.direct[value] = structure
            continue
        pair = _merged_pair(name, catalogue)
        excluded = getattr(catalogue, "excluded", None)
        if pair is not None and pair != (None, None):
            mapping.merged[value] = pair
        elif pair is not None or (excluded is not None and excluded.find(name) is not None):
            mapping.excluded[value] = name
        else:
            mapping.unmapped[value] = name
    mapping.order = {s.label: n for n, s in enumerate(catalogue)}
    provided = {s.label for s in mapping.structures}
    if len(provided) != len(mapping.structures):
        raise DKOARError("two model labels map to the same catalogue structure; check the model's label names")
    mapping.missing = [s for s in catalogue if s.label not in provided]
    return mapping


def to_catalogue_labels(model_labels: np.ndarray, mapping: LabelMapping, ct: Volume) -> Segmentation:
    out = np.zeros(model_labels.shape, dtype=np.uint8)
    for value, structure in mapping.direct.items():
        out[model_labels == value] = structure.label
    if mapping.merged:
        midline = body_midline_x(ct)
        # LPS x of every voxel: x = a_00 i + a_01 j + a_02 k + a_03
        a = ct.affine[0]
        k, j, i = np.indices(model_labels.shape, sparse=True)
        x = a[0] * i + a[1] * j + a[2] * k + a[3]
        is_left = np.broadcast_to(x > midline, model_labels.shape)
        for value, (left, right) in mapping.merged.items():
            voxels = model_labels == value
            if left is not None:
                out[voxels & is_left] = left.label
            if right is not None:
                out[voxels & ~is_left] = right.label
    return Segmentation(out, ct.affine.copy(), mapping.structures)
