"""Voxel-edge contours give back exactly the pixels they were drawn from."""

import numpy as np

from DKOARSegmentationLib.output.contours import mask_to_polygons, polygon_area, polygons_to_mask


def test_random_masks_round_trip_exactly():
    rng = np.random.default_rng(1)
    for _ in range(200):
        mask = rng.random((17, 23)) < rng.uniform(0.1, 0.8)
        polygons = mask_to_polygons(mask)
        assert np.array_equal(polygons_to_mask(polygons, mask.shape), mask)
        # signed areas: outer loops count, holes subtract; the total is the pixel count
        assert sum(polygon_area(p) for p in polygons) == mask.sum()


def test_holes_islands_and_tiny_structures():
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(xx - 30, yy - 30)
    ring = (r < 20) & (r > 8)
    ring |= np.hypot(xx - 30, yy - 30) < 3  # an island inside the hole
    ring[2, 2] = True  # a one-pixel island
    ring[5, 50:52] = True  # a two-pixel island
    polygons = mask_to_polygons(ring)
    assert len(polygons) == 5
    assert np.array_equal(polygons_to_mask(polygons, ring.shape), ring)
    single = [p for p in polygons if abs(polygon_area(p)) == 1][0]
    assert len(single) == 4  # a one-voxel contour is a square, never a 1- or 2-point contour
    assert min(len(p) for p in polygons) >= 4


def test_vertices_lie_on_pixel_edges_and_collinear_points_are_dropped():
    mask = np.zeros((10, 10), bool)
    mask[2:7, 3:9] = True
    (poly,) = mask_to_polygons(mask)
    assert len(poly) == 4
    assert np.all(np.abs(poly - np.round(poly - 0.5) - 0.5) < 1e-12)
    assert sorted(map(tuple, poly)) == [(2.5, 1.5), (2.5, 6.5), (8.5, 1.5), (8.5, 6.5)]
