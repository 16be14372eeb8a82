"""Re-laying arrays between a volume's own axis order and the canonical LPS layout.

The canonical layout has array axes (+z, +y, +x): slices from inferior to superior, rows from
anterior to posterior, columns from patient right to patient left, which is how a head-first
supine series is laid. Models see every series in this layout, so that a feet-first or prone
series is segmented as well as a head-first supine one, and left stays left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DKOARError

_ARRAY_AXIS_TO_IJK = {0: 2, 1: 1, 2: 0}  # array axis (k, j, i) -> column of the affine


@dataclass(frozen=True)
class Relayout:
    """How to go from a volume's array to the canonical layout and back."""

    order: tuple[int, int, int]  # canonical axis -> array axis
    flips: tuple[bool, bool, bool]  # per canonical axis
    spacing_zyx: tuple[float, float, float]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.order + tuple(range(3, array.ndim)))
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=axis)
        return np.ascontiguousarray(out)

    def canonical_shape(self, shape) -> tuple[int, int, int]:
        return tuple(int(shape[a]) for a in self.order)  # type: ignore[return-value]

    def canonical_x(self, affine: np.ndarray, shape) -> tuple[float, float]:
        """LPS x of the canonical layout's first column and the step from one column to the next
        (the other axes at the volume's centre)."""
        affine = np.asarray(affine, float)
        column = _ARRAY_AXIS_TO_IJK[self.order[2]]
        sizes = {_ARRAY_AXIS_TO_IJK[a]: int(shape[a]) for a in range(3)}
        base = affine[0, 3] + sum(affine[0, c] * (sizes[c] - 1) / 2.0 for c in range(3) if c != column)
        step = affine[0, column]
        if self.flips[2]:
            return float(base + step * (sizes[column] - 1)), float(-step)
        return float(base), float(step)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        out = array
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=axis)
        inverse = tuple(int(np.argsort(self.order)[a]) for a in range(3))
        return np.ascontiguousarray(np.transpose(out, inverse + tuple(range(3, array.ndim))))


def relayout_for(affine: np.ndarray, max_obliquity_deg: float = 1.0) -> Relayout:
    """The relayout of a grid whose axes follow the patient axes (within ``max_obliquity_deg``)."""
    direction = np.asarray(affine, float)[:3, :3]
    spacing = np.linalg.norm(direction, axis=0)
    order: list[int | None] = [None, None, None]
    flips = [False, False, False]
    for a in range(3):
        col = direction[:, _ARRAY_AXIS_TO_IJK[a]] / spacing[_ARRAY_AXIS_TO_IJK[a]]
        lps_axis = int(np.argmax(np.abs(col)))
        if np.degrees(np.arccos(min(1.0, abs(col[lps_axis])))) > max_obliquity_deg:
            raise DKOARError(
                "the image axes are oblique to the patient axes; only series whose rows, columns "
                "and slices follow the patient axes are supported"
            )
        canonical = 2 - lps_axis
        if order[canonical] is not None:
            raise DKOARError("the image axes are degenerate (two axes along one patient axis)")
        order[canonical] = a
        flips[canonical] = bool(col[lps_axis] < 0)
    spacing_zyx = tuple(float(spacing[_ARRAY_AXIS_TO_IJK[a]]) for a in order)  # type: ignore[index]
    return Relayout(tuple(order), tuple(flips), spacing_zyx)  # type: ignore[arg-type]


def canonical_layout(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``array`` in the canonical layout (nearest patient axes) and its voxel size along (z, y, x)."""
    relayout = relayout_for(affine, max_obliquity_deg=45.0)
    return relayout.to_canonical(array), relayout.spacing_zyx
