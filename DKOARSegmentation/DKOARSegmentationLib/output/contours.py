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


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Directed unit edges between corners (x, y) of pixel squares, inside kept on the left (x
    right, y up), in corner units where pixel (j, i) spans corners x in [i, i+1], y in [j, j+1]:
    start x, start y, direction x, direction y (int arrays)."""
    m = np.pad(mask.astype(bool), 1)
    inside = m[1:-1, 1:-1]
    parts = []
    # (outside neighbour, start corner offset, direction): below -> along y=j rightwards; above ->
    # along y=j+1 leftwards; left -> along x=i downwards; right -> along x=i+1 upwards
    for outside, (ox, oy), (dx, dy) in (
        (m[:-2, 1:-1], (0, 0), (1, 0)),
        (m[2:, 1:-1], (1, 1), (-1, 0)),
        (m[1:-1, :-2], (0, 1), (0, -1)),
        (m[1:-1, 2:], (1, 0), (0, 1)),
    ):
        j, i = np.nonzero(inside & ~outside)
        parts.append((i + ox, j + oy, np.full(len(i), dx), np.full(len(i), dy)))
    return tuple(np.concatenate([p[n] for p in parts]) for n in range(4))


def _successors(sx: np.ndarray, sy: np.ndarray, dx: np.ndarray, dy: np.ndarray, width: int) -> np.ndarray:
    """For every edge, the edge that continues its loop: the one starting where it ends; at a
    corner where two loops touch diagonally (two candidates), the left turn, so that a loop keeps
    hugging the same pixels (4-connectivity). The result is a permutation of the edges."""
    n = len(sx)
    start_id = sy * (width + 1) + sx
    end_id = (sy + dy) * (width + 1) + (sx + dx)
    order = np.argsort(start_id, kind="stable")
    sorted_ids = start_id[order]
    first = np.searchsorted(sorted_ids, end_id)
    second = np.minimum(first + 1, n - 1)
    candidate1, candidate2 = order[first], order[second]
    has_two = (first + 1 < n) & (sorted_ids[second] == end_id)
    turn1 = dx * dy[candidate1] - dy * dx[candidate1]  # > 0: left turn
    turn2 = dx * dy[candidate2] - dy * dx[candidate2]
    return np.where(has_two & (turn2 > turn1), candidate2, candidate1)


def mask_to_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (N x 2 arrays of x, y in pixel index units, last point not repeated)
    whose even-odd interior holds exactly the pixel centres of ``mask``; holes are separate,
    nested polygons. Collinear vertices are dropped."""
    sx, sy, dx, dy = _boundary_edges(mask)
    n = len(sx)
    if n == 0:
        return []
    successor = _successors(sx, sy, dx, dy, mask.shape[1])
    predecessor = np.empty(n, dtype=np.intp)
    predecessor[successor] = np.arange(n)
    # a polygon vertex is an edge start where the direction changes
    is_vertex = (dx != dx[predecessor]) | (dy != dy[predecessor])
    points = np.column_stack([sx, sy]).astype(np.float64) - 0.5
    # the walk along each loop is the one step left in Python: integer list lookups, O(edges)
    nxt = successor.tolist()
    seen = bytearray(n)
    polygons = []
    for first in range(n):
        if seen[first]:
            continue
        loop = []
        e = first
        while not seen[e]:
            seen[e] = 1
            loop.append(e)
            e = nxt[e]
        loop = np.asarray(loop)
        polygons.append(points[loop[is_vertex[loop]]])
    return polygons


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


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Open polyline simplification: keep the points farther than ``tolerance`` from the chord."""
    if len(points) < 3:
        return points
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        seg = points[b] - points[a]
        length = float(np.hypot(*seg))
        rel = points[a + 1:b] - points[a]
        if length == 0:
            dist = np.hypot(rel[:, 0], rel[:, 1])
        else:
            dist = np.abs(seg[0] * rel[:, 1] - seg[1] * rel[:, 0]) / length
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return points[keep]


def simplify_polygon(poly: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed polygon (split at its two mutually farthest-ish vertices)."""
    if tolerance <= 0 or len(poly) <= 4:
        return poly
    start = 0
    far = int(np.argmax(np.hypot(*(poly - poly[start]).T)))
    first = _douglas_peucker(poly[start:far + 1], tolerance)
    second = _douglas_peucker(np.vstack([poly[far:], poly[:1]]), tolerance)
    out = np.vstack([first[:-1], second[:-1]])
    return out if len(out) >= 3 else poly


def polygons_for_slice(mask: np.ndarray, tolerance: float = 0.0, keyholes: bool = True) -> list[np.ndarray]:
    """Voxel-edge polygons of a slice (holes joined by keyholes unless ``keyholes`` is False),
    simplified by at most ``tolerance`` (pixel units) when the simplified polygons still give back
    exactly the same pixels; else the exact ones."""
    exact = mask_to_polygons(mask)
    if keyholes:
        exact = keyhole(exact)
    if tolerance <= 0 or not exact:
        return exact
    simplified = [simplify_polygon(p, tolerance) for p in exact]
    if sum(len(p) for p in simplified) == sum(len(p) for p in exact):
        return exact
    if np.array_equal(polygons_to_mask(simplified, mask.shape), mask):
        return simplified
    return exact


def _ray_up_hit(point: np.ndarray, loop: np.ndarray) -> tuple[float, int, np.ndarray] | None:
    """Nearest point of ``loop`` straight above ``point`` (smaller y) on the vertical line through
    it: (distance, index of the edge's first vertex, hit point), or None."""
    x, y = point
    a = loop
    b = np.roll(loop, -1, axis=0)
    # a horizontal edge spanning x above the point, or a vertical edge on the ray (first contact
    # is its lower end)
    horizontal = (a[:, 1] == b[:, 1]) & (np.minimum(a[:, 0], b[:, 0]) <= x) & (x <= np.maximum(a[:, 0], b[:, 0]))
    on_ray = (a[:, 0] == x) & (b[:, 0] == x) & (a[:, 1] != b[:, 1])
    hit_y = np.where(horizontal, a[:, 1], np.maximum(a[:, 1], b[:, 1]))
    distance = np.where((horizontal | on_ray) & (hit_y < y), y - hit_y, np.inf)
    m = int(np.argmin(distance))
    if not np.isfinite(distance[m]):
        return None
    return float(distance[m]), m, np.array([x, hit_y[m]])


def keyhole(polygons: list[np.ndarray]) -> list[np.ndarray]:
    """Join every hole to the loop around it by a zero-width channel along a pixel-edge line.

    Readers that fill each contour and combine them by union (plastimatch, some planning systems)
    fill nested holes; a keyhole polygon means the same pixels to every reader (the channel lies on
    a half-integer line, so it covers no pixel centre). Islands stay separate contours.
    """
    loops = [np.asarray(p, dtype=float) for p in polygons]
    holes = [p for p in loops if polygon_area(p) < 0]
    if not holes:
        return loops
    others = [p for p in loops if polygon_area(p) >= 0]
    pending = sorted(holes, key=lambda p: float(p[:, 1].min()))
    while pending:
        hole = pending.pop()  # the lowest first, so a hole hit by another is still pending or done
        top = int(np.lexsort((hole[:, 0], hole[:, 1]))[0])
        h = hole[top]
        candidates = [(loop, _ray_up_hit(h, loop)) for loop in others + pending]
        candidates = [(loop, hit) for loop, hit in candidates if hit is not None]
        if not candidates:
            others.append(hole)  # cannot happen for a hole of a pixel mask; keep it nested
            continue
        target, (dist, m, p) = min(candidates, key=lambda c: c[1][0])
        rotated = np.vstack([hole[top:], hole[:top]])
        spliced = np.vstack([target[:m + 1], p[None], rotated, h[None], p[None], target[m + 1:]])
        # drop the duplicate where the hit point is a vertex already
        keep = np.ones(len(spliced), dtype=bool)
        keep[1:] = np.any(spliced[1:] != spliced[:-1], axis=1)
        spliced = spliced[keep]
        if any(t is target for t in pending):
            pending = [spliced if t is target else t for t in pending]
        else:
            others = [spliced if t is target else t for t in others]
    return others
