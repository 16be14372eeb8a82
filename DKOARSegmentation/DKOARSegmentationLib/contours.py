"""Planar contours of a 2D mask that give back exactly the same pixels, and the reverse.

Why by hand: the contour must round-trip through planning systems, which fill a pixel when its
centre lies inside the polygon (even-odd for nested contours). Contours through pixel centres
(rt-utils) lose the outer ring; marching squares loses area on small structures. Polygons along
pixel edges contain exactly the pixel centres of the mask, so mask -> contours -> mask is exact,
and no library offers them.

Coordinates are in pixel index units: x along columns (i), y along rows (j); pixel (j, i) is the
unit square [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5].
"""

from __future__ import annotations

import numpy as np


def _boundary_edges(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Directed edges between corners (x, y) of pixel squares, inside kept on the left (x right,
    y up), in corner units where pixel (j, i) spans corners x in [i, i+1], y in [j, j+1]."""
    m = np.pad(mask.astype(bool), 1)
    inside = m[1:-1, 1:-1]
    edges = []
    # neighbour at lower y (row j-1) outside: edge along y=j, from x=i to x=i+1
    j, i = np.nonzero(inside & ~m[:-2, 1:-1])
    edges += [((x, y), (x + 1, y)) for y, x in zip(j.tolist(), i.tolist())]
    # neighbour at higher y (row j+1) outside: edge along y=j+1 from x=i+1 to x=i
    j, i = np.nonzero(inside & ~m[2:, 1:-1])
    edges += [((x + 1, y + 1), (x, y + 1)) for y, x in zip(j.tolist(), i.tolist())]
    # neighbour at lower x (column i-1) outside: edge along x=i from y=j+1 to y=j
    j, i = np.nonzero(inside & ~m[1:-1, :-2])
    edges += [((x, y + 1), (x, y)) for y, x in zip(j.tolist(), i.tolist())]
    # neighbour at higher x (column i+1) outside: edge along x=i+1 from y=j to y=j+1
    j, i = np.nonzero(inside & ~m[1:-1, 2:])
    edges += [((x + 1, y), (x + 1, y + 1)) for y, x in zip(j.tolist(), i.tolist())]
    return edges


def _left_turn_first(incoming: tuple[int, int], candidates: list[tuple[int, int]], start) -> tuple[int, int]:
    """At a corner where two loops touch diagonally, keep hugging the same pixels (4-connectivity)."""
    dx, dy = incoming

    def turn(c):
        ox, oy = c[0] - start[0], c[1] - start[1]
        return dx * oy - dy * ox  # > 0: left turn

    return max(candidates, key=turn)


def mask_to_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (N x 2 arrays of x, y in pixel index units, last point not repeated)
    whose even-odd interior holds exactly the pixel centres of ``mask``; holes are separate,
    nested polygons. Collinear vertices are dropped."""
    edges = _boundary_edges(mask)
    if not edges:
        return []
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a, b in edges:
        outgoing.setdefault(a, []).append(b)
    polygons = []
    while outgoing:
        start = next(iter(outgoing))
        loop = [start]
        current = start
        previous = None
        while True:
            targets = outgoing[current]
            if len(targets) == 1 or previous is None:
                nxt = targets[0]
            else:
                nxt = _left_turn_first((current[0] - previous[0], current[1] - previous[1]), targets, current)
            targets.remove(nxt)
            if not targets:
                del outgoing[current]
            previous, current = current, nxt
            if current == start:
                break
            loop.append(current)
        polygons.append(_drop_collinear(np.asarray(loop, dtype=np.float64)) - 0.5)
    return polygons


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    prev = np.roll(points, 1, axis=0)
    nxt = np.roll(points, -1, axis=0)
    cross = (points[:, 0] - prev[:, 0]) * (nxt[:, 1] - points[:, 1]) - (points[:, 1] - prev[:, 1]) * (nxt[:, 0] - points[:, 0])
    return points[cross != 0]


def polygons_to_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Even-odd rasterisation at pixel centres; several polygons combine by XOR (holes, islands)."""
    from matplotlib.path import Path as MplPath

    out = np.zeros(shape, dtype=bool)
    if not polygons:
        return out
    for poly in polygons:
        poly = np.asarray(poly, dtype=float)
        if len(poly) < 3:
            continue
        x0, y0 = np.floor(poly.min(axis=0)).astype(int)
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, shape[1] - 1), min(y1, shape[0] - 1)
        if x1 < x0 or y1 < y0:
            continue
        yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        inside = MplPath(poly).contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
        out[y0:y1 + 1, x0:x1 + 1] ^= inside
    return out


def polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
