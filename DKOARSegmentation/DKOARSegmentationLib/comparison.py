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

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .added_path_length import added_path_length
from .atomic import atomic_path
from .catalogue import Catalogue, Structure, default_catalogue
from .errors import DKOARError
from .surface_metrics import hd95, mean_surface_distance, surface_dice, surface_distances
from .volume import Segmentation, Volume

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
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
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
        dice=2.0 * both / (n_ai + n_final),
        hd95_mm=_finite_or_none(hd95(sd)),
        msd_mm=_finite_or_none(mean_surface_distance(sd)),
        surface_dice=float(surface_dice(sd, tolerance_mm)),
        tolerance_mm=float(tolerance_mm),
        apl_mm=apl,
        unchanged=False,
        **volumes,
    )


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
    from .labelmap_io import read_labelmap

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
    from .rtstruct_reader import read_rtstruct_masks

    contours, unknown = contour_set_from_masks(read_rtstruct_masks(path, ct), ct.affine, catalogue)
    if not contours.structures:
        raise DKOARError(f"{path}: none of its ROIs ({', '.join(unknown) or 'none'}) names a catalogue structure")
    return contours


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


def _rounded(value):
    if isinstance(value, bool) or value is None:
        return value
    return round(float(value), 6)


def comparison_json(results: dict[str, StructureComparison]) -> dict:
    return {"structures": {name: {k: _rounded(v) for k, v in r.as_dict().items()} for name, r in results.items()}}


def write_comparison(results: dict[str, StructureComparison], out: Path | str) -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the same table as CSV beside it (``out`` with suffix .csv)."""
    out = Path(out)
    csv_path = out.with_suffix(".csv") if out.suffix.lower() != ".csv" else out.with_name(out.stem + "_metrics.csv")
    document = comparison_json(results)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["structure", *METRIC_FIELDS])
    for name, values in document["structures"].items():
        writer.writerow([name, *("" if values[f] is None else values[f] for f in METRIC_FIELDS)])
    with atomic_path(csv_path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return out, csv_path
