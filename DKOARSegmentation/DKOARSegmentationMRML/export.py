"""A segmentation node -> DICOM RTSTRUCT, DICOM SEG or Slicer ``.seg.nrrd``, through the core's
writers (the ones `dkoar export-rtstruct`, `dkoar export-seg` and `dkoar segment` use), so that
Slicer and the command line write the same files.

For the DICOM objects the CT is passed as the core's ``Volume`` loaded from its DICOM files
(``ct_loader.load_ct``): they reference its series and slices. The segments are read on the CT
volume node's grid, which must be the CT's grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.output.dicom_seg import write_dicom_seg
from DKOARSegmentationLib.output.label_maps import write_seg_nrrd
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import Segmentation, Volume

from .geometry import same_grid
from .readback import ReadbackReport, segmentation_to_core


def _segmentation_on_ct(segmentation_node, reference_volume_node, ct: Volume, what: str,
                        catalogue: Catalogue, report: ReadbackReport | None) -> Segmentation:
    if ct.dicom is None:
        raise DKOARError(f"{what} references the DICOM CT it was drawn on; load the CT from its DICOM files")
    if not same_grid(reference_volume_node, ct.shape, ct.affine):
        raise DKOARError(f"the volume {reference_volume_node.GetName()} is not on the grid of the DICOM CT")
    segmentation = segmentation_to_core(segmentation_node, reference_volume_node, catalogue, report)
    # the same grid, checked above: carry the DICOM CT's own affine (no rounding differences)
    return Segmentation(segmentation.labels, ct.affine.copy(), segmentation.structures, segmentation.provenance)


def export_rtstruct(segmentation_node, reference_volume_node, ct: Volume, path: Path | str,
                    options: RTStructOptions | None = None, edited=frozenset(),
                    catalogue: Catalogue | None = None, report: ReadbackReport | None = None) -> Path:
    """Write the segmentation as an RTSTRUCT on ``ct``; structures in ``edited`` are written with
    ROIGenerationAlgorithm SEMIAUTOMATIC (added to any in ``options.edited``)."""
    segmentation = _segmentation_on_ct(segmentation_node, reference_volume_node, ct, "an RTSTRUCT",
                                       catalogue or default_catalogue(), report)
    options = options or RTStructOptions()
    options = dataclasses.replace(options, edited=frozenset(options.edited) | frozenset(edited))
    return write_rtstruct(ct, segmentation, path, options)


def export_dicom_seg(segmentation_node, reference_volume_node, ct: Volume, source_datasets: list, path: Path | str,
                     model_name: str = "user segmentation", model_version: str = "", edited=frozenset(),
                     catalogue: Catalogue | None = None, report: ReadbackReport | None = None) -> Path:
    """Write the segmentation as a binary DICOM SEG on ``ct`` (``source_datasets``: the CT's slice
    headers in its k order, ``dicom_seg.read_source_datasets``); structures in ``edited`` are
    described as SEMIAUTOMATIC."""
    segmentation = _segmentation_on_ct(segmentation_node, reference_volume_node, ct, "a DICOM SEG",
                                       catalogue or default_catalogue(), report)
    return write_dicom_seg(ct, source_datasets, segmentation, path, model_name=model_name,
                           model_version=model_version, edited=frozenset(edited))


def export_seg_nrrd(segmentation_node, reference_volume_node, path: Path | str, catalogue: Catalogue | None = None,
                    report: ReadbackReport | None = None) -> Path:
    """Write the segmentation as a ``.seg.nrrd`` on the volume node's grid, one segment per
    structure with the catalogue's names, colours and terminology (the file `dkoar segment` writes).
    No DICOM CT is needed."""
    catalogue = catalogue or default_catalogue()
    segmentation = segmentation_to_core(segmentation_node, reference_volume_node, catalogue, report)
    write_seg_nrrd(segmentation, path, catalogue)
    return Path(path)
