"""Overlap of two label maps, per structure."""

from __future__ import annotations

import numpy as np

from .catalogue import Structure


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; 1.0 when both are empty (nothing to find, nothing found)."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_structure(test: np.ndarray, reference: np.ndarray, structures: tuple[Structure, ...]) -> dict[str, float]:
    return {s.name: dice(test == s.label, reference == s.label) for s in structures}
