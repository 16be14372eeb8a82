"""A core label map into the scene: one segmentation node, one segment per catalogue structure.

All segments share one binary-labelmap layer whose voxel values are the catalogue label numbers
(structures do not overlap in a label map), as Slicer itself does when it reads a .seg.nrrd. Each
segment gets the structure's name (also its segment ID), colour and terminology (category, type,
laterality modifier). The CT is the reference geometry, and the segmentation sits beside the CT
under its study in the subject hierarchy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import Segmentation

from .geometry import ras_from_lps_affine, same_grid
from .terminology import set_segment_terminology

BINARY_LABELMAP = "Binary labelmap"  # vtkSegmentationConverter::GetBinaryLabelmapRepresentationName()


def _labelmap_image(labels: np.ndarray, affine_lps: np.ndarray, scene):
    """A vtkOrientedImageData of a (k, j, i) label array, made through a temporary labelmap node."""
    node = slicer.util.addVolumeFromArray(np.ascontiguousarray(labels, dtype=np.uint8),
                                          ijkToRAS=ras_from_lps_affine(affine_lps),
                                          name="__dkoar_temp__", nodeClassName="vtkMRMLLabelMapVolumeNode")
    try:
        image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(node)
    finally:
        display = node.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(node)
    return image


def load_segmentation(segmentation: Segmentation, reference_volume_node, name: str | None = None,
                      catalogue: Catalogue | None = None, check_grid: bool = True):
    """Add a vtkMRMLSegmentationNode holding ``segmentation`` (a core label map on the CT's grid).

    Every structure the segmentation carries gets a segment, empty ones too (so the clinician sees
    what was looked for and can draw it). Returns the node.
    """
    catalogue = catalogue or default_catalogue()
    scene = reference_volume_node.GetScene()
    if check_grid and not same_grid(reference_volume_node, segmentation.labels.shape, segmentation.affine):
        raise DKOARError("the label map is not on the grid of the reference volume (shape or geometry differ)")
    name = name or f"{reference_volume_node.GetName()} OARs"
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    image = _labelmap_image(segmentation.labels, segmentation.affine, scene)
    vtk_segmentation = node.GetSegmentation()
    if hasattr(vtk_segmentation, "SetSourceRepresentationName"):  # Slicer >= 5.4
        vtk_segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
    else:
        vtk_segmentation.SetMasterRepresentationName(BINARY_LABELMAP)
    present = set(np.unique(segmentation.labels).tolist())
    was_modifying = node.StartModify()
    try:
        for structure in segmentation.structures:
            segment = slicer.vtkSegment()
            segment.SetName(structure.name)
            segment.SetColor(*(c / 255.0 for c in structure.rgb))
            segment.SetLabelValue(int(structure.label))
            # the same image object for every segment: one shared layer
            segment.AddRepresentation(BINARY_LABELMAP, image)
            set_segment_terminology(segment, structure)
            vtk_segmentation.AddSegment(segment, structure.name)
            # the status the core's .seg.nrrd gives: "completed" when contoured, "not started" when
            # empty, shown in the Segment Editor's list (SetSegmentStatus: Slicer >= 4.11)
            logic = slicer.vtkSlicerSegmentationsModuleLogic
            logic.SetSegmentStatus(segment, logic.Completed if structure.label in present else logic.NotStarted)
    finally:
        node.EndModify(was_modifying)
    # follow the CT's transform, if any: the core worked in the CT's own coordinates
    node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
    place_beside(node, reference_volume_node)
    return node


def load_seg_nrrd(path: Path | str, reference_volume_node, name: str | None = None,
                  catalogue: Catalogue | None = None):
    """The pipeline's ``.seg.nrrd`` (segment()'s output) as a segmentation node, read by the core so
    that names, colours and codes come from the catalogue whatever the file says."""
    from DKOARSegmentationLib.output.label_maps import read_labelmap

    catalogue = catalogue or default_catalogue()
    segmentation = read_labelmap(path, catalogue)
    return load_segmentation(segmentation, reference_volume_node, name, catalogue)


def place_beside(node, volume_node) -> int:
    """Put ``node`` under the parent of ``volume_node`` in the subject hierarchy (the CT's study,
    for a CT loaded from DICOM). Returns the node's subject hierarchy item."""
    shNode = node.GetScene().GetSubjectHierarchyNode()
    if shNode is None:
        raise DKOARError("the scene has no subject hierarchy")
    # In Slicer the subject hierarchy plugins (Qt) add an item for every data node; without them
    # (slicer-core) the items are made here.
    volume_item = shNode.GetItemByDataNode(volume_node) or shNode.CreateItem(shNode.GetSceneItemID(), volume_node)
    item = shNode.GetItemByDataNode(node) or shNode.CreateItem(shNode.GetSceneItemID(), node)
    parent = shNode.GetItemParent(volume_item)
    shNode.SetItemParent(item, parent)
    return item


def segment_ids(node) -> list[str]:
    import vtk

    ids = vtk.vtkStringArray()
    node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]
