"""Geometry between the core and Slicer.

The core keeps ``affine``: homogeneous voxel index (i, j, k, 1) -> patient LPS mm, with arrays laid
out (k, j, i). Slicer's volume nodes keep IJK -> RAS, and ``slicer.util.arrayFromVolume`` gives the
same (k, j, i) layout. So the only conversion is the sign of the first two world axes:
RAS = diag(-1, -1, 1) LPS.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_from_lps_affine(affine_lps: np.ndarray) -> np.ndarray:
    """IJK->RAS (4x4) from the core's IJK->LPS affine."""
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=float)


def lps_from_ras_affine(ijk_to_ras: np.ndarray) -> np.ndarray:
    """The core's IJK->LPS affine from an IJK->RAS matrix (the conversion is its own inverse)."""
    return LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)


def volume_node_affine_lps(volume_node) -> np.ndarray:
    """The core's affine of a Slicer volume node (its own IJK->RAS, parent transforms ignored)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    return lps_from_ras_affine(ijk_to_ras)


def add_ct_volume_node(ct, name: str = "CT"):
    """A scalar volume node in ``slicer.mrmlScene`` holding a core ``Volume`` (voxels and geometry)."""
    return slicer.util.addVolumeFromArray(ct.voxels, ijkToRAS=ras_from_lps_affine(ct.affine), name=name)


def same_grid(volume_node, shape: tuple[int, int, int], affine_lps: np.ndarray, atol: float = 1e-3) -> bool:
    """Whether a volume node has the array shape (k, j, i) and the LPS affine of a core label map."""
    image = volume_node.GetImageData()
    if image is None:
        return False
    dims = image.GetDimensions()
    return tuple(shape) == (dims[2], dims[1], dims[0]) and np.allclose(
        volume_node_affine_lps(volume_node), affine_lps, atol=atol)
