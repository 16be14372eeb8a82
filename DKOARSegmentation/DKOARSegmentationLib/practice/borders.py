"""Where an attempt's borders lie against the reference's, in patient directions.

``borders_mm[d]`` is the signed distance in mm by which the attempt's extent in patient direction
``d`` goes beyond (+) or stops short of (-) the reference's. Directions are those of the patient
(DICOM LPS: left = +x, posterior = +y, cranial = +z), taken from the grid's index -> LPS matrix,
so the numbers are the same whatever the patient position (HFS, FFS, HFP, FFP) and array order.

The extent of a mask in direction ``d`` (a unit vector) is the farthest reach of its voxels along
``d``: the largest ``centre . d`` over its voxels plus half the voxel's own depth along ``d``
(``0.5 * sum_a |A_a . d|`` for the voxel's edge vectors ``A_a``), i.e. the outer face of the
outermost voxel. On a grid along the patient axes that is the bounding box's face; an oblique
grid needs no special case.

Robust to stray voxels: before the extremes are found, islands (26-connected pieces) of a single
voxel, and islands holding less than 5 % of the structure's voxels, are left out; the largest
island always counts. So a stray click of the brush far from the organ, or a speck an eraser left
behind, does not move a border, while an organ drawn in two real pieces keeps both. A voxel that
touches the structure is part of it and counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIRECTIONS = ("cranial", "caudal", "anterior", "posterior", "left", "right")
UNIT_LPS = {
    "left": (1.0, 0.0, 0.0), "right": (-1.0, 0.0, 0.0),
    "posterior": (0.0, 1.0, 0.0), "anterior": (0.0, -1.0, 0.0),
    "cranial": (0.0, 0.0, 1.0), "caudal": (0.0, 0.0, -1.0),
}
OPPOSITE = {"cranial": "caudal", "caudal": "cranial", "anterior": "posterior", "posterior": "anterior",
            "left": "right", "right": "left"}
ISLAND_FRACTION = 0.05  # islands smaller than this share of the structure do not set its extent


def main_islands(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its single-voxel islands and islands under ISLAND_FRACTION of its voxels
    (the largest island is always kept)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = (sizes > 1) & (sizes >= ISLAND_FRACTION * sizes.sum())
    keep[int(np.argmax(sizes))] = True
    if keep.all():
        return mask
    return np.concatenate([[False], keep])[labels]


@dataclass(frozen=True)
class Extents:
    """The farthest reach (mm along each direction's unit vector) of a mask's main islands."""

    mm: dict[str, float]

    def __getitem__(self, direction: str) -> float:
        return self.mm[direction]


def extents(mask: np.ndarray, affine: np.ndarray, offset_kji: tuple[int, int, int] = (0, 0, 0)) -> Extents | None:
    """Extents of a (k, j, i) mask whose voxel [0, 0, 0] lies at index ``offset_kji`` of the grid
    of ``affine`` (index (i, j, k, 1) -> LPS mm); None when the mask is empty."""
    kept = main_islands(mask)
    k, j, i = np.nonzero(kept)
    if len(k) == 0:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    edges = affine[:3, :3]  # columns: the voxel's edge vectors along i, j, k in LPS mm
    ijk = (np.asarray(i, np.float64) + offset_kji[2], np.asarray(j, np.float64) + offset_kji[1],
           np.asarray(k, np.float64) + offset_kji[0])
    out = {}
    for name in DIRECTIONS:
        d = np.asarray(UNIT_LPS[name])
        g = edges.T @ d  # how far one index step along i, j, k moves along d
        reach = g[0] * ijk[0] + g[1] * ijk[1] + g[2] * ijk[2]
        out[name] = float(reach.max() + affine[:3, 3] @ d + 0.5 * np.abs(g).sum())
    return Extents(out)


def border_differences(reference: Extents | None, attempt: Extents | None) -> dict[str, float | None]:
    """Per direction, how far (mm) the attempt reaches beyond (+) or short of (-) the reference;
    None for every direction when either is empty."""
    if reference is None or attempt is None:
        return {name: None for name in DIRECTIONS}
    return {name: attempt[name] - reference[name] for name in DIRECTIONS}


def side_names(laterality: str) -> dict[str, str]:
    """How the left and right borders are named for a structure: lateral and medial for a paired
    structure (a left one's lateral border is its left border), left and right otherwise."""
    if laterality == "L":
        return {"left": "lateral", "right": "medial"}
    if laterality == "R":
        return {"left": "medial", "right": "lateral"}
    return {"left": "left", "right": "right"}
