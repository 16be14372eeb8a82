"""Added path length on shapes whose answer is known by hand (voxel-edge contours, in mm)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from DKOARSegmentationLib.monitoring.added_path_length import added_path_length, added_path_length_per_slice
from DKOARSegmentationLib.output.contours import mask_to_polygons

SX, SY = 0.8, 1.2  # mm along i (x) and j (y): anisotropic in-plane on purpose
TOL = 2.0


def square(n_slices=3, shape=(60, 60), rows=(10, 40), cols=(10, 40)):
    mask = np.zeros((n_slices, *shape), bool)
    mask[:, rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def test_identical_contours_add_nothing():
    ai = square()
    assert added_path_length(ai.copy(), ai, (SX, SY), TOL) == 0.0


def test_contour_drawn_from_scratch_counts_whole():
    final = square()
    per_slice = added_path_length_per_slice(final, np.zeros_like(final), (SX, SY), TOL)
    np.testing.assert_allclose(per_slice, 2 * (30 * SX + 30 * SY))


def test_deleted_contour_adds_nothing():
    ai = square()
    final = ai.copy()
    final[1] = False  # the clinician deleted the AI contour of the middle slice
    assert added_path_length(final, ai, (SX, SY), TOL) == 0.0


def test_a_bump_adds_its_top_and_the_far_part_of_its_sides():
    ai = square()
    final = ai.copy()
    h, w = 5, 6  # rows and columns of the bump on the top side, away from the corners
    final[:, 10 - h:10, 20:20 + w] = True
    expected = w * SX + 2 * (h * SY - TOL)
    assert added_path_length(final, ai, (SX, SY), TOL) == pytest.approx(3 * expected, abs=1e-9)
    # within the tolerance, the bump is not counted at all
    assert added_path_length(final, ai, (SX, SY), h * SY + 0.01) == pytest.approx(0.0, abs=1e-9)


def test_a_shifted_contour():
    n, s = 30, 5  # square of n pixels, the AI shifted by s columns
    final = square()
    ai = square(cols=(10 + s, 40 + s))
    # left side all; top and bottom where farther than TOL from the AI's corners; right side but
    # its ends near the AI's top and bottom edges
    expected = n * SY + 2 * (s * SX - TOL) + (n * SY - 2 * TOL)
    assert added_path_length(final, ai, (SX, SY), TOL) == pytest.approx(3 * expected, abs=1e-9)


def test_a_hole_cut_by_the_clinician_counts_its_rim():
    ai = square(n_slices=1)
    final = ai.copy()
    final[:, 20:30, 20:30] = False  # a 10 x 10 hole, 10 pixels from every side
    assert added_path_length(final, ai, (SX, SY), TOL) == pytest.approx(2 * (10 * SX + 10 * SY), abs=1e-9)


def test_matches_the_perimeter_of_the_exported_polygons():
    rng = np.random.default_rng(3)
    blob = ndimage.gaussian_filter(rng.random((4, 50, 50)), 3) > 0.5
    expected = 0.0
    for k in range(blob.shape[0]):
        for poly in mask_to_polygons(blob[k]):
            d = np.diff(np.vstack([poly, poly[:1]]), axis=0) * [SX, SY]
            expected += float(np.sum(np.hypot(d[:, 0], d[:, 1])))
    assert expected > 0
    assert added_path_length(blob, np.zeros_like(blob), (SX, SY), TOL) == pytest.approx(expected, rel=1e-12)


def test_a_dilation_by_more_than_the_tolerance_counts_everywhere():
    ai = square(n_slices=1)
    final = np.zeros_like(ai)
    final[:, 6:44, 6:44] = True  # grown by 4 pixels: 3.2 mm in x, 4.8 mm in y, both > TOL
    assert added_path_length(final, ai, (SX, SY), TOL) == pytest.approx(2 * (38 * SX + 38 * SY), abs=1e-9)
    # and by less than the tolerance: nothing
    final2 = np.zeros_like(ai)
    final2[:, 9:41, 9:41] = True  # 0.8 mm and 1.2 mm; the corners' diagonal is 1.44 mm
    assert added_path_length(final2, ai, (SX, SY), TOL) == pytest.approx(0.0, abs=1e-9)
