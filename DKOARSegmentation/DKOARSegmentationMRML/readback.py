"""Segments back to the core: masks and a catalogue label map on the CT's grid.

``slicer.util.arrayFromSegmentBinaryLabelmap`` resamples a segment onto a reference volume's grid
(same (k, j, i) layout as the core's arrays); the core's affine is the reference volume's IJK->RAS
with the first two world axes negated (LPS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import slicer

from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import Segmentation

from .geometry import volume_node_affine_lps


@dataclass
class ReadbackReport:
    unknown_segments: list[str] = field(default_factory=list)  # names the catalogue does not know
    overlaps: dict[str, int] = field(default_factory=dict)  # "Big/Small" -> voxels both claimed


@dataclass(frozen=True)
class SegmentMask:
    """A segment on the reference grid, kept as its bounding box and the mask inside it (34 full-size
    masks of a 512 x 512 x 150 CT would take over a gigabyte)."""

    shape: tuple[int, int, int]
    box: tuple[slice, slice, slice] | None = None  # None: empty
    crop: np.ndarray | None = None

    @classmethod
    def from_full(cls, mask: np.ndarray) -> "SegmentMask":
        from scipy import ndimage

        mask = np.asarray(mask) > 0
        boxes = ndimage.find_objects(mask.astype(np.uint8))
        if not boxes or boxes[0] is None:
            return cls(mask.shape)
        return cls(mask.shape, boxes[0], mask[boxes[0]].copy())

    @classmethod
    def of_label(cls, labels: np.ndarray, value: int, box) -> "SegmentMask":
        """The voxels of ``value`` in a label array, ``box`` being its find_objects bounding box."""
        if box is None:
            return cls(labels.shape)
        crop = labels[box] == value
        if not crop.any():
            return cls(labels.shape)
        return cls(labels.shape, box, crop)

    @property
    def empty(self) -> bool:
        return self.box is None

    @property
    def count(self) -> int:
        return 0 if self.crop is None else int(self.crop.sum())

    def full(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        if self.box is not None:
            out[self.box] = self.crop
        return out

    def same_voxels(self, other: "SegmentMask") -> bool:
        """Voxel for voxel equal (boxes are tight, so equal masks have equal boxes)."""
        if self.empty or other.empty:
            return self.empty and other.empty
        return self.box == other.box and np.array_equal(self.crop, other.crop)


def label_masks(labels: np.ndarray, structures) -> dict[str, SegmentMask]:
    """name -> SegmentMask for each structure of a catalogue label map, in one pass."""
    from scipy import ndimage

    wanted = [s for s in structures if s.label > 0]
    boxes = ndimage.find_objects(labels, max_label=max((s.label for s in wanted), default=0))
    return {s.name: SegmentMask.of_label(labels, s.label, boxes[s.label - 1]) for s in wanted}


def segment_mask(segmentation_node, segment_id: str, reference_volume_node) -> np.ndarray:
    """A segment as a (k, j, i) bool array on the reference volume's grid (resampled by Slicer)."""
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume_node) > 0


def _matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def layer_region(image, reference_volume_node):
    """A binary labelmap layer's voxel values where they lie on the reference grid: ``(values,
    box)``, ``values`` a (k, j, i) view of the layer clipped to the grid and ``box`` its slices on
    the grid (None for an empty layer); None when the layer is off the grid and must be resampled.
    Slicer keeps a layer's extent to the voxels in use, so this is usually much less than the CT."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    layer_to_world, ijk_to_ras = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(layer_to_world)
    reference_volume_node.GetIJKToRASMatrix(ijk_to_ras)
    if not np.allclose(_matrix(layer_to_world), _matrix(ijk_to_ras), atol=1e-6):
        return None
    dims = reference_volume_node.GetImageData().GetDimensions()
    extent = image.GetExtent()
    scalars = image.GetPointData().GetScalars() if image.GetPointData() else None
    empty = (np.zeros((0, 0, 0), np.uint8), None)
    if scalars is None or extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return empty
    values = vtk_to_numpy(scalars)
    if values.dtype.kind not in "iu":
        return None
    values = (values[:, 0] if values.ndim > 1 else values).reshape(
        extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    src, dst = [], []
    axes = ((extent[4], extent[5], dims[2]), (extent[2], extent[3], dims[1]), (extent[0], extent[1], dims[0]))
    for lo, hi, size in axes:
        a, b = max(lo, 0), min(hi, size - 1)
        if b < a:
            return empty[0].astype(values.dtype), None
        src.append(slice(a - lo, b - lo + 1))
        dst.append(slice(a, b + 1))
    return values[tuple(src)], tuple(dst)


def layer_on_reference(image, reference_volume_node) -> np.ndarray | None:
    """A binary labelmap layer's voxel values on the whole reference grid (a new array), when the
    layer lies on that grid (the usual case: the CT is the reference geometry); None when it must
    be resampled."""
    region = layer_region(image, reference_volume_node)
    if region is None:
        return None
    values, box = region
    dims = reference_volume_node.GetImageData().GetDimensions()
    out = np.zeros((dims[2], dims[1], dims[0]), dtype=values.dtype)
    if box is not None:
        out[box] = values
    return out


def segment_masks(segmentation_node, reference_volume_node, catalogue: Catalogue | None = None,
                  report: ReadbackReport | None = None) -> dict[str, SegmentMask]:
    """Catalogue name -> SegmentMask for every segment whose name (or alias) the catalogue knows.

    A binary labelmap layer that lies on the reference grid is read once for all its segments;
    anything else (another grid, a transform between the nodes, a closed-surface source) goes
    through ``slicer.util.arrayFromSegmentBinaryLabelmap``, which resamples.
    """
    from scipy import ndimage

    from .result_loading import BINARY_LABELMAP, segment_ids

    catalogue = catalogue or default_catalogue()
    masks = {}
    vtk_segmentation = segmentation_node.GetSegmentation()
    same_frame = segmentation_node.GetTransformNodeID() == reference_volume_node.GetTransformNodeID()
    binary_source = vtk_segmentation.GetSourceRepresentationName() == BINARY_LABELMAP \
        if hasattr(vtk_segmentation, "GetSourceRepresentationName") else False  # Slicer >= 5.4
    layers: dict[str, tuple | None] = {}  # layer address -> (values on the reference grid, label boxes)
    for segment_id in segment_ids(segmentation_node):
        segment = vtk_segmentation.GetSegment(segment_id)
        name = segment.GetName()
        structure = catalogue.find(name)
        if structure is None:
            if report is not None:
                report.unknown_segments.append(name)
            continue
        image = segment.GetRepresentation(BINARY_LABELMAP) if same_frame and binary_source else None
        layer = None
        if image is not None:
            key = image.GetAddressAsString(image.GetClassName())
            if key not in layers:
                values = layer_on_reference(image, reference_volume_node)
                layers[key] = None if values is None else (values, ndimage.find_objects(values))
            layer = layers[key]
        value = int(segment.GetLabelValue())
        if layer is not None:
            values, boxes = layer
            box = boxes[value - 1] if 0 < value <= len(boxes) else None
            masks[structure.name] = SegmentMask.of_label(values, value, box)
        else:
            masks[structure.name] = SegmentMask.from_full(segment_mask(segmentation_node, segment_id,
                                                                       reference_volume_node))
    return masks


def masks_to_labels(masks: dict[str, SegmentMask], shape, catalogue: Catalogue,
                    report: ReadbackReport | None = None) -> np.ndarray:
    """One label map from possibly overlapping masks: where they overlap the smaller structure keeps
    the voxels (the rule of the core's RTSTRUCT import), overlaps counted in ``report``."""
    labels = np.zeros(shape, dtype=np.uint8)
    owner: dict[int, str] = {}
    for name, mask in sorted(masks.items(), key=lambda nm: (-nm[1].count, nm[0])):
        if mask.empty:
            continue
        structure = catalogue.by_name(name)
        region = labels[mask.box]
        clash = region[mask.crop]
        if report is not None:
            for other in np.unique(clash[clash > 0]):
                report.overlaps[f"{owner[int(other)]}/{name}"] = int(np.sum(clash == other))
        region[mask.crop] = structure.label
        owner[structure.label] = name
    return labels


def segmentation_to_core(segmentation_node, reference_volume_node, catalogue: Catalogue | None = None,
                         report: ReadbackReport | None = None) -> Segmentation:
    """The segmentation node as a core Segmentation on the reference volume's grid, in catalogue
    numbering, carrying the structures that have a segment (in catalogue order)."""
    catalogue = catalogue or default_catalogue()
    masks = segment_masks(segmentation_node, reference_volume_node, catalogue, report)
    dims = reference_volume_node.GetImageData().GetDimensions()
    shape = (dims[2], dims[1], dims[0])
    labels = masks_to_labels(masks, shape, catalogue, report)
    structures = tuple(s for s in catalogue if s.name in masks)
    return Segmentation(labels, volume_node_affine_lps(reference_volume_node), structures,
                        {"source": f"Slicer segmentation {segmentation_node.GetName()}"})
