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
    best = None
    for m in range(len(a)):
        (x1, y1), (x2, y2) = a[m], b[m]
        if y1 == y2:  # horizontal edge
            if min(x1, x2) <= x <= max(x1, x2) and y1 < y:
                cand = (y - y1, m, np.array([x, y1]))
            else:
                continue
        elif x1 == x2 == x:  # vertical edge on the ray: first contact is its lower end
            low = max(y1, y2)
            if low < y:
                cand = (y - low, m, np.array([x, low]))
            else:
                continue
        else:
            continue
        if best is None or cand[0] < best[0]:
            best = cand
    return best


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
