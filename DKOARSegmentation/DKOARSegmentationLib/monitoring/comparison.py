"""AI contours versus the clinician's final contours, per structure: the editing-effort metrics.

Per structure (all distances in mm on the CT's own, usually anisotropic, voxels):

- ``dice``: volumetric Dice;
- ``hd95_mm``: 95th-percentile Hausdorff distance, the larger of the two directed area-weighted
  percentiles (``surface_metrics``);
- ``msd_mm``: mean surface distance, the mean of the two directed area-weighted means;
- ``surface_dice`` at ``tolerance_mm``, the structure's tolerance in the catalogue (Nikolov et
  al. 2021 where published, 2 mm elsewhere);
- ``apl_mm``: added path length of the final contour against the AI contour, at the same
  tolerance (``added_path_length``);
- ``volume_ai_ml`` and ``volume_final_ml``; ``unchanged``: the two masks are voxel for voxel equal.

Empty structures:

- both empty (nothing found, nothing drawn): dice 1, surface Dice 1, HD95 0, MSD 0, APL 0,
  unchanged;
- AI empty, final drawn: dice 0, surface Dice 0, HD95 and MSD undefined (None; ``null`` in JSON,
  empty in CSV), APL = the whole final contour;
- AI drawn, final empty (deleted): dice 0, surface Dice 0, HD95 and MSD None, APL 0.

The inputs are label maps in catalogue numbering or RTSTRUCTs read onto the CT's grid; each
structure is kept as a crop around its voxels, so that a full CT costs little more than its
structures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DKOARError
from ..structures.catalogue import Catalogue, default_catalogue
from ..volume import Segmentation, voxel_volume_ml
from .added_path_length import added_path_length
from .contour_sets import ContourSet, contour_set_from_segmentation
from .overlap import dice_from_counts
from .surface_metrics import hd95, mean_surface_distance, surface_dice, surface_distances

METRIC_FIELDS = ("dice", "hd95_mm", "msd_mm", "surface_dice", "tolerance_mm", "apl_mm",
                 "volume_ai_ml", "volume_final_ml", "unchanged")


@dataclass
class StructureComparison:
    dice: float
    hd95_mm: float | None
    msd_mm: float | None
    surface_dice: float
    tolerance_mm: float
    apl_mm: float
    volume_ai_ml: float
    volume_final_ml: float
    unchanged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _finite_or_none(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def compare_masks(ai: np.ndarray, final: np.ndarray, spacing_kji: tuple[float, float, float],
                  tolerance_mm: float) -> StructureComparison:
    """The metrics of one structure from two masks (k, j, i) on the same grid (crops are fine).
    ``spacing_kji``: voxel size in mm along the arrays' axes (slice, row, column)."""
    ai = np.asarray(ai, dtype=bool)
    final = np.asarray(final, dtype=bool)
    voxel_ml = voxel_volume_ml(spacing_kji)
    n_ai, n_final = int(ai.sum()), int(final.sum())
    both = int(np.logical_and(ai, final).sum())
    unchanged = n_ai == n_final == both
    volumes = dict(volume_ai_ml=n_ai * voxel_ml, volume_final_ml=n_final * voxel_ml)
    if n_ai == 0 and n_final == 0:
        return StructureComparison(1.0, 0.0, 0.0, 1.0, tolerance_mm, 0.0, unchanged=True, **volumes)
    apl = added_path_length(final, ai, (spacing_kji[2], spacing_kji[1]), tolerance_mm)
    if n_ai == 0 or n_final == 0:
        return StructureComparison(0.0, None, None, 0.0, tolerance_mm, apl, unchanged=False, **volumes)
    if unchanged:
        return StructureComparison(1.0, 0.0, 0.0, 1.0, tolerance_mm, 0.0, unchanged=True, **volumes)
    sd = surface_distances(ai, final, spacing_kji)
    return StructureComparison(
        dice=dice_from_counts(both, n_ai, n_final),
        hd95_mm=_finite_or_none(hd95(sd)),
        msd_mm=_finite_or_none(mean_surface_distance(sd)),
        surface_dice=float(surface_dice(sd, tolerance_mm)),
        tolerance_mm=float(tolerance_mm),
        apl_mm=apl,
        unchanged=False,
        **volumes,
    )


def compare_contour_sets(ai: ContourSet, final: ContourSet) -> dict[str, StructureComparison]:
    """Metrics of every structure present in either set, in catalogue order."""
    if ai.shape != final.shape or not np.allclose(ai.affine, final.affine, atol=1e-3):
        raise DKOARError("the AI and final contours are not on the same grid; give both on the CT they were drawn on")
    spacing = ai.spacing_kji
    structures = {**final.structures, **ai.structures}
    results: dict[str, StructureComparison] = {}
    for name in sorted(structures, key=lambda n: structures[n].label):
        boxes = [b for b in (ai.items.get(name, (None,))[0], final.items.get(name, (None,))[0]) if b is not None]
        tolerance = structures[name].tolerance_mm
        if not boxes:
            results[name] = compare_masks(np.zeros((1, 1, 1), bool), np.zeros((1, 1, 1), bool), spacing, tolerance)
            continue
        box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))
        results[name] = compare_masks(ai.mask_in(name, box), final.mask_in(name, box), spacing, tolerance)
    return results


def compare_segmentations(ai: Segmentation, final: Segmentation, catalogue: Catalogue | None = None
                          ) -> dict[str, StructureComparison]:
    catalogue = catalogue or default_catalogue()
    return compare_contour_sets(contour_set_from_segmentation(ai, catalogue),
                                contour_set_from_segmentation(final, catalogue))

