"""What the plausibility checks measure of each structure, in patient LPS millimetres: its
volume, centroid, craniocaudal extent and connected parts (26-connected, as a planning system
joins voxels that touch at a corner), each structure within its own bounding box."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..volume import voxel_volume_ml

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
_MAX_STRAYS = 20  # stray parts measured voxel by voxel
_MAX_POINTS = 50000  # of the largest part, for the distance of a stray part (a subsample beyond this)


@dataclass
class Part:
    voxels: int
    volume_ml: float
    centroid: np.ndarray  # LPS mm
    distance_mm: float = 0.0  # from the largest part (0 for the largest)


@dataclass
class StructureGeometry:
    name: str
    voxels: int
    volume_ml: float
    centroid: np.ndarray | None = None  # LPS mm
    z_range: tuple[float, float] | None = None  # LPS z of the lowest and highest slice's voxel centres
    parts: list[Part] = field(default_factory=list)  # largest first


def _points_lps(affine: np.ndarray, kji: np.ndarray) -> np.ndarray:
    ijk = kji[:, ::-1].astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def measure_structure(name: str, box, mask: np.ndarray | None, affine: np.ndarray) -> StructureGeometry:
    """The geometry of one structure given as its bounding box (k, j, i slices) and mask within it."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    affine = np.asarray(affine, dtype=np.float64)
    voxel_ml = voxel_volume_ml(np.linalg.norm(affine[:3, :3], axis=0))
    if box is None or mask is None or not mask.any():
        return StructureGeometry(name, 0, 0.0)
    offset = np.array([s.start for s in box])
    labelled, n = ndimage.label(mask, structure=_CONNECTIVITY)
    sizes = np.bincount(labelled.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    kji = np.argwhere(mask) + offset
    points = _points_lps(affine, kji)
    part_of = labelled[mask]
    counts = np.bincount(part_of, minlength=n + 1).astype(np.float64)
    sums = np.stack([np.bincount(part_of, weights=points[:, a], minlength=n + 1) for a in range(3)], axis=1)
    parts = [Part(int(sizes[index]), float(sizes[index] * voxel_ml), sums[index + 1] / counts[index + 1])
             for index in order]
    if len(parts) > 1:
        main = points[part_of == order[0] + 1]
        if len(main) > _MAX_POINTS:
            main = main[:: len(main) // _MAX_POINTS + 1]
        tree = cKDTree(main)
        for rank, (part, index) in enumerate(zip(parts[1:], order[1:])):
            # the nearest pair of voxel centres of the stray and the largest part (the many specks
            # of a broken result beyond the largest strays: from their centres)
            near = points[part_of == index + 1] if rank < _MAX_STRAYS else part.centroid[None, :]
            part.distance_mm = float(tree.query(near)[0].min())
    z = points[:, 2]
    return StructureGeometry(name, int(mask.sum()), float(mask.sum() * voxel_ml), points.mean(axis=0),
                             (float(z.min()), float(z.max())), parts)


def measure_contours(contours) -> dict[str, StructureGeometry]:
    """The geometry of every structure of a ``monitoring.contour_sets.ContourSet``."""
    return {name: measure_structure(name, box, mask, contours.affine) for name, (box, mask) in contours.items.items()}
