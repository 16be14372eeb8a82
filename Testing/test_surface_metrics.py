"""Surface metrics against DeepMind's surface-distance package (the test reference, PyPI
``surface-distance``), on random shapes with anisotropic voxels; and the empty-structure rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import surface_distance as ref  # DeepMind's package, the reference (test extra)
from scipy import ndimage
from surface_distance import lookup_tables as ref_tables

from DKOARSegmentationLib.monitoring.comparison import compare_masks
from DKOARSegmentationLib.monitoring.surface_metrics import (
    directed_mean_distances,
    hd95,
    mean_surface_distance,
    percentile_hausdorff,
    surface_area,
    surface_corners,
    surface_dice,
    surface_distances,
    surfel_area_table,
)

# the reference still imports scipy.ndimage.filters/morphology (deprecated, gone in SciPy 2.0)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPACINGS = [(2.5, 0.977, 0.977), (3.0, 1.3, 0.7), (1.0, 1.0, 1.0), (0.6, 2.2, 1.7)]


def _blob(rng, shape, sigma=2.0, level=0.5):
    return ndimage.gaussian_filter(rng.random(shape), sigma) > level


def _reference_code(code: int) -> int:
    """Our neighbour code of a configuration -> the reference's code of the same configuration
    (ours: voxel offset (a, b, c) has bit 4a+2b+c; the reference's: bit 7-(4a+2b+c))."""
    return sum(1 << (7 - (4 * a + 2 * b + c)) for a, b, c in itertools.product((0, 1), repeat=3)
               if code & (1 << (4 * a + 2 * b + c)))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_area_table_matches_the_reference(spacing):
    ours = surfel_area_table(spacing)
    theirs = ref_tables.create_table_neighbour_code_to_surface_area(spacing)
    mapped = np.array([theirs[_reference_code(c)] for c in range(256)])
    np.testing.assert_allclose(ours, mapped, rtol=0, atol=1e-12)
    assert ours[0] == ours[255] == 0


def test_random_shapes_agree_with_the_reference():
    rng = np.random.default_rng(20260601)
    worst_sdice = worst_hd95 = worst_hd = worst_msd = 0.0
    for trial in range(24):
        spacing = tuple(float(v) for v in rng.uniform(0.5, 3.0, 3))
        shape = tuple(int(v) for v in rng.integers(12, 30, 3))
        a = _blob(rng, shape, sigma=rng.uniform(1.2, 3.0))
        b = _blob(rng, shape, sigma=rng.uniform(1.2, 3.0))
        if trial % 3 == 0:  # a shape and an edited copy of it, as AI and final
            b = ndimage.binary_dilation(a, iterations=1) if trial % 2 else ndimage.shift(a, (1, -1, 0), order=0)
        a[0] = b[:, :, -1] = False  # touching the border differently
        if not a.any() or not b.any():
            continue
        theirs = ref.compute_surface_distances(a, b, spacing)
        ours = surface_distances(a, b, spacing)
        for tolerance in (0.5, 1.0, 2.0, 2.5, 2.85):
            worst_sdice = max(worst_sdice, abs(ref.compute_surface_dice_at_tolerance(theirs, tolerance)
                                               - surface_dice(ours, tolerance)))
        worst_hd95 = max(worst_hd95, abs(ref.compute_robust_hausdorff(theirs, 95) - hd95(ours)))
        worst_hd = max(worst_hd, abs(ref.compute_robust_hausdorff(theirs, 100) - percentile_hausdorff(ours, 100)))
        their_means = ref.compute_average_surface_distance(theirs)
        worst_msd = max(worst_msd, float(np.max(np.abs(np.array(their_means) - directed_mean_distances(ours)))))
    assert worst_sdice <= 1e-6
    assert worst_hd95 <= 0.01
    assert worst_hd <= 0.01
    assert worst_msd <= 1e-6


def test_surfels_of_a_box_add_up_to_its_surface():
    # a box of 4 x 5 x 6 voxels: marching cubes cuts the edges and corners, but the flat faces
    # are exact, so the area lies between the inner (3x4x5) and outer (4x5x6) box surfaces
    spacing = (2.0, 0.5, 1.5)
    mask = np.zeros((8, 9, 10), bool)
    mask[2:6, 2:7, 2:8] = True
    _, areas = surface_corners(mask, spacing)

    def box_area(n):
        x, y, z = (n[i] * spacing[i] for i in range(3))
        return 2 * (x * y + y * z + x * z)

    assert box_area((3, 4, 5)) < areas.sum() < box_area((4, 5, 6))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_the_surface_area_of_a_ball_is_its_marching_cubes_mesh_area(spacing):
    from skimage.measure import marching_cubes, mesh_surface_area

    radius = 20.0
    axes = [(np.arange(int(2 * radius / s) + 5) - (int(2 * radius / s) + 4) / 2) * s for s in spacing]
    k, j, i = np.meshgrid(*axes, indexing="ij")
    ball = k ** 2 + j ** 2 + i ** 2 <= radius ** 2
    verts, faces, _, _ = marching_cubes(np.pad(ball, 1).astype(float), 0.5, spacing=spacing)
    area = surface_area(ball, spacing)
    assert area == pytest.approx(mesh_surface_area(verts, faces), rel=1e-6)
    # the mesh of a voxel mask keeps some of its steps (more on long voxels): more than the ball's
    assert 4 * np.pi * radius ** 2 < area < 1.25 * 4 * np.pi * radius ** 2
    assert surface_area(np.zeros((3, 3, 3), bool), spacing) == 0.0


def test_a_shift_of_one_slice_gives_its_thickness():
    spacing = (2.5, 0.9, 0.9)
    a = np.zeros((20, 30, 30), bool)
    a[5:12, 8:20, 8:22] = True
    b = np.roll(a, 1, axis=0)
    sd = surface_distances(a, b, spacing)
    assert hd95(sd) == pytest.approx(2.5)
    assert surface_dice(sd, 2.5) == pytest.approx(1.0)
    assert surface_dice(sd, 2.4) < 1.0


def test_crop_does_not_change_anything():
    rng = np.random.default_rng(5)
    spacing = (3.0, 1.1, 0.8)
    a = _blob(rng, (14, 20, 18))
    b = ndimage.binary_erosion(a)
    big_a = np.zeros((40, 60, 50), bool)
    big_b = np.zeros_like(big_a)
    big_a[10:24, 25:45, 7:25] = a
    big_b[10:24, 25:45, 7:25] = b
    small, big = surface_distances(a, b, spacing), surface_distances(big_a, big_b, spacing)
    assert hd95(small) == hd95(big)
    assert surface_dice(small, 2.0) == surface_dice(big, 2.0)
    assert mean_surface_distance(small) == mean_surface_distance(big)


def test_empty_structures_follow_the_documented_rules():
    spacing = (2.5, 1.0, 1.0)
    empty = np.zeros((6, 12, 12), bool)
    drawn = empty.copy()
    drawn[2:4, 3:9, 3:7] = True  # 2 slices of a 6 x 4 rectangle: 20 mm of contour each

    both = compare_masks(empty, empty, spacing, 2.0)
    assert (both.dice, both.surface_dice, both.hd95_mm, both.msd_mm, both.apl_mm, both.unchanged) == (1.0, 1.0, 0.0, 0.0, 0.0, True)

    added = compare_masks(empty, drawn, spacing, 2.0)  # AI found nothing, the clinician drew it
    assert (added.dice, added.surface_dice, added.hd95_mm, added.msd_mm) == (0.0, 0.0, None, None)
    assert added.apl_mm == pytest.approx(2 * 20.0)
    assert added.volume_final_ml == pytest.approx(48 * 2.5 / 1000) and added.volume_ai_ml == 0

    deleted = compare_masks(drawn, empty, spacing, 2.0)  # the clinician deleted the AI's structure
    assert (deleted.dice, deleted.surface_dice, deleted.hd95_mm, deleted.apl_mm, deleted.unchanged) == (0.0, 0.0, None, 0.0, False)

    same = compare_masks(drawn, drawn.copy(), spacing, 2.0)
    assert same.unchanged and same.dice == 1.0 and same.hd95_mm == 0.0 and same.apl_mm == 0.0


def test_compare_masks_agrees_with_the_reference_on_an_edit():
    rng = np.random.default_rng(11)
    spacing = (2.0, 0.977, 0.977)
    ai = _blob(rng, (16, 40, 40), sigma=3.0)
    final = ndimage.binary_dilation(ai, iterations=2)
    result = compare_masks(ai, final, spacing, 2.85)
    theirs = ref.compute_surface_distances(ai, final, spacing)
    assert result.surface_dice == pytest.approx(ref.compute_surface_dice_at_tolerance(theirs, 2.85), abs=1e-6)
    assert result.hd95_mm == pytest.approx(ref.compute_robust_hausdorff(theirs, 95), abs=0.01)
    assert result.msd_mm == pytest.approx(float(np.mean(ref.compute_average_surface_distance(theirs))), abs=1e-6)
    assert result.dice == pytest.approx(ref.compute_dice_coefficient(ai, final), abs=1e-12)
