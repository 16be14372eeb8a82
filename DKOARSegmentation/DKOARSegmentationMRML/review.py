"""Looking at a CT and its structures: CT window presets, the structure table, visibility, opacity,
jumping to a structure.

What a front end shows in its review list, with no widget in it: each structure of a segmentation
node with its catalogue name, group, colour, terminology, volume, visibility and opacity, in the
catalogue's order (grouped by anatomy); "jump" centres every slice view on a voxel of the structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import slicer

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import voxel_volume_ml

from .readback import layer_region, segment_mask
from .result_loading import BINARY_LABELMAP, segment_ids
from .terminology import segment_codes

# (window, level) in HU, Slicer's CT presets (its volume display presets of the same names)
WINDOW_PRESETS = {
    "Soft tissue": (400.0, 40.0),
    "Bone": (1000.0, 400.0),
    "Brain": (100.0, 50.0),
    "Lung": (1400.0, -500.0),
}


def apply_window_preset(volume_node, preset: str) -> tuple[float, float]:
    """Set a CT window preset (a key of WINDOW_PRESETS) on the volume's display; returns (window, level)."""
    if preset not in WINDOW_PRESETS:
        raise DKOARError(f"unknown window preset {preset!r} ({', '.join(WINDOW_PRESETS)})")
    display = volume_node.GetDisplayNode()
    if display is None:
        volume_node.CreateDefaultDisplayNodes()
        display = volume_node.GetDisplayNode()
    window, level = WINDOW_PRESETS[preset]
    display.AutoWindowLevelOff()
    display.SetWindowLevel(window, level)
    return window, level


@dataclass
class StructureRow:
    """One line of the review list."""

    segment_id: str
    name: str
    group: str
    color: str  # "#rrggbb"
    terminology: str  # "type (modifier)" as the segment's terminology says, e.g. "Parotid gland (Left)"
    volume_ml: float
    visible: bool
    opacity: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgb)


def structure_rows(segmentation_node, reference_volume_node, catalogue: Catalogue | None = None,
                   volumes: dict[str, float] | None = None) -> list[StructureRow]:
    """The segments of ``segmentation_node`` in catalogue order (segments the catalogue does not know
    last), with their volumes on the reference grid (``volumes``: name -> ml already known)."""
    catalogue = catalogue or default_catalogue()
    if volumes is None:
        volumes = structure_volumes(segmentation_node, reference_volume_node, catalogue)
    display = segmentation_node.GetDisplayNode()
    order = {s.name: n for n, s in enumerate(catalogue)}
    rows = []
    for segment_id in segment_ids(segmentation_node):
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        structure = catalogue.find(segment.GetName())
        codes = segment_codes(segment)
        terminology = ""
        if codes is not None and codes.type is not None:
            terminology = codes.type.meaning + (f" ({codes.modifier.meaning})" if codes.modifier else "")
        name = structure.name if structure is not None else segment.GetName()
        rows.append(StructureRow(
            segment_id=segment_id, name=name, group=structure.group if structure is not None else "Other",
            color=_hex(segment.GetColor()), terminology=terminology, volume_ml=round(volumes.get(name, 0.0), 2),
            visible=bool(display.GetSegmentVisibility(segment_id)) if display is not None else True,
            opacity=float(display.GetSegmentOpacity2DFill(segment_id)) if display is not None else 1.0))
    rows.sort(key=lambda r: order.get(r.name, len(order)))
    return rows


def structure_volumes(segmentation_node, reference_volume_node,
                      catalogue: Catalogue | None = None) -> dict[str, float]:
    """Catalogue name -> volume in ml on the reference grid. A shared layer is counted once for all
    its segments (one pass, whatever the number of structures: the list refreshes after each edit);
    a segment off the reference grid is resampled."""
    catalogue = catalogue or default_catalogue()
    voxel = voxel_volume_ml(reference_volume_node.GetSpacing())
    counts: dict[str, np.ndarray | None] = {}  # layer address -> voxels per label value
    volumes = {}
    segmentation = segmentation_node.GetSegmentation()
    for segment_id in segment_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        structure = catalogue.find(segment.GetName())
        if structure is None:
            continue
        image = segment.GetRepresentation(BINARY_LABELMAP)
        value = int(segment.GetLabelValue())
        per_value = None
        if image is not None and segmentation_node.GetTransformNodeID() == reference_volume_node.GetTransformNodeID():
            key = image.GetAddressAsString(image.GetClassName())
            if key not in counts:
                region = layer_region(image, reference_volume_node)  # the layer's own voxels, not the CT's
                counts[key] = None if region is None else np.bincount(region[0].ravel(), minlength=1)
            per_value = counts[key]
        if per_value is not None:
            volumes[structure.name] = (int(per_value[value]) if 0 < value < len(per_value) else 0) * voxel
        else:
            mask = segment_mask(segmentation_node, segment_id, reference_volume_node)
            volumes[structure.name] = int(mask.sum()) * voxel
    return volumes


def set_structure_visible(segmentation_node, segment_id: str, visible: bool) -> None:
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetSegmentVisibility(segment_id, bool(visible))


def set_structure_opacity(segmentation_node, segment_id: str, opacity: float) -> None:
    """The segment's opacity in the slice views (fill and outline) and in 3D, 0 to 1."""
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetSegmentOpacity(segment_id, float(min(max(opacity, 0.0), 1.0)))


def structure_point_ras(segmentation_node, segment_id: str, reference_volume_node) -> tuple[float, float, float]:
    """A voxel of the structure near its centre of mass, in RAS: the centre of mass itself may lie
    outside a curved structure (a mandible), the voxel nearest to it never does."""
    mask = segment_mask(segmentation_node, segment_id, reference_volume_node)
    voxels = np.argwhere(mask)
    if len(voxels) == 0:
        raise DKOARError(f"{segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()} is empty: "
                         "nothing to jump to")
    centre = voxels.mean(axis=0)
    k, j, i = voxels[np.argmin(((voxels - centre) ** 2).sum(axis=1))]
    import vtk

    ijk_to_ras = vtk.vtkMatrix4x4()
    reference_volume_node.GetIJKToRASMatrix(ijk_to_ras)
    ras = ijk_to_ras.MultiplyPoint((float(i), float(j), float(k), 1.0))
    return ras[0], ras[1], ras[2]


def jump_to_structure(segmentation_node, segment_id: str, reference_volume_node) -> tuple[float, float, float]:
    """Centre every slice view of the scene on the structure (as Slicer's "jump to segment" does,
    on a voxel of the structure); returns the RAS point."""
    r, a, s = structure_point_ras(segmentation_node, segment_id, reference_volume_node)
    slice_node = slicer.vtkMRMLSliceNode
    slice_node.JumpAllSlices(segmentation_node.GetScene(), r, a, s, slice_node.CenteredJumpSlice)
    return r, a, s


def segment_id_of(segmentation_node, name: str) -> str:
    """The segment ID of a structure (by catalogue name or alias, or the segment's own name)."""
    catalogue = default_catalogue()
    wanted = catalogue.find(name)
    for segment_id in segment_ids(segmentation_node):
        segment_name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        structure = catalogue.find(segment_name)
        if segment_name == name or (structure is not None and wanted is not None and structure.name == wanted.name):
            return segment_id
    raise DKOARError(f"{name} is not a structure of {segmentation_node.GetName()}")
