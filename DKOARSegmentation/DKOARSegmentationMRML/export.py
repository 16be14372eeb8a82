"""A segmentation node -> DICOM RTSTRUCT, through the core's writer (the one `dkoar export-rtstruct`
uses), so that Slicer and the command line write the same structure set.

The CT is passed as the core's ``Volume`` loaded from its DICOM files (``ct_loader.load_ct``): the
RTSTRUCT references its series and slices. The segments are read on the CT volume node's grid,
which must be the CT's grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from DKOARSegmentationLib.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.volume import Segmentation, Volume

from .geometry import same_grid
from .readback import ReadbackReport, segmentation_to_core


def export_rtstruct(segmentation_node, reference_volume_node, ct: Volume, path: Path | str,
                    options: RTStructOptions | None = None, edited=frozenset(),
                    catalogue: Catalogue | None = None, report: ReadbackReport | None = None) -> Path:
    """Write the segmentation as an RTSTRUCT on ``ct``; structures in ``edited`` are written with
    ROIGenerationAlgorithm SEMIAUTOMATIC (added to any in ``options.edited``)."""
    catalogue = catalogue or default_catalogue()
    if ct.dicom is None:
        raise DKOARError("an RTSTRUCT references the DICOM CT it was drawn on; load the CT from its DICOM files")
    if not same_grid(reference_volume_node, ct.shape, ct.affine):
        raise DKOARError(f"the volume {reference_volume_node.GetName()} is not on the grid of the DICOM CT")
    segmentation = segmentation_to_core(segmentation_node, reference_volume_node, catalogue, report)
    # the same grid, checked above: carry the DICOM CT's own affine (no rounding differences)
    segmentation = Segmentation(segmentation.labels, ct.affine.copy(), segmentation.structures, segmentation.provenance)
    options = options or RTStructOptions()
    options = dataclasses.replace(options, edited=frozenset(options.edited) | frozenset(edited))
    return write_rtstruct(ct, segmentation, path, options)
