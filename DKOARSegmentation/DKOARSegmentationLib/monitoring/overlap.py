"""Overlap of two label maps, per structure: the Dice coefficient."""

from __future__ import annotations

import numpy as np

from ..structures.catalogue import Structure


def dice_from_counts(both: int, n_a: int, n_b: int) -> float:
    """Dice from the voxel counts of two masks and of their intersection; 1.0 when both are empty
    (nothing to find, nothing found)."""
    total = n_a + n_b
    return 1.0 if total == 0 else 2.0 * both / total


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks on the same grid."""
    return dice_from_counts(int(np.logical_and(a, b).sum()), int(a.sum()), int(b.sum()))


def dice_per_structure(test: np.ndarray, reference: np.ndarray, structures: tuple[Structure, ...]) -> dict[str, float]:
    return {s.name: dice(test == s.label, reference == s.label) for s in structures}
