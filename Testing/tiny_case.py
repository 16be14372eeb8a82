"""A logged case small enough to add a hundred times in a test: a coarse phantom CT written as real
DICOM, and the AI's and the clinician's RTSTRUCTs of a few structures (the clinician's with one edit)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions, write_rtstruct
from DKOARSegmentationLib.phantom import PhantomGrid
from DKOARSegmentationLib.phantom.ct_series_writer import write_ct_series
from DKOARSegmentationLib.phantom.generate import generate_phantom
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from DKOARSegmentationLib.volume import Segmentation, Volume

# 5 mm pixels, 10 mm slices: a 48 x 48 x 13 CT, the head still there
TINY_GRID = PhantomGrid(matrix=48, pixel_mm=5.0, slice_mm=10.0, z_min=-60.0, z_max=60.0)
STRUCTURES = ("Brainstem", "SpinalCord", "Parotid_L")


@dataclass
class TinyCase:
    folder: Path
    ct_dir: Path
    ai: Path
    final: Path
    ct: Volume
    truth: Segmentation


def write_tiny_case(folder: Path, seed: int = 5, structures=STRUCTURES) -> TinyCase:
    catalogue = default_catalogue()
    phantom = generate_phantom(seed, "HFS", TINY_GRID, catalogue)
    phantom.ct.dicom = write_ct_series(phantom.ct, folder / "ct", seed=seed)
    kept = tuple(catalogue.by_name(name) for name in structures)
    labels = np.where(np.isin(phantom.truth.labels, [s.label for s in kept]), phantom.truth.labels, 0).astype(np.uint8)
    truth = Segmentation(labels, phantom.truth.affine.copy(), kept)
    edited = labels.copy()  # the clinician removed the top slice of the first structure
    first = kept[0].label
    top = int(np.nonzero(edited == first)[0].max())
    edited[top][edited[top] == first] = 0
    options = RTStructOptions(model_name="DK-OAR", model_version="1.0")
    write_rtstruct(phantom.ct, truth, folder / "ai.dcm", options)
    write_rtstruct(phantom.ct, Segmentation(edited, truth.affine.copy(), kept), folder / "final.dcm", options)
    return TinyCase(folder, folder / "ct", folder / "ai.dcm", folder / "final.dcm", phantom.ct, truth)
