"""Added path length (APL): how much contour a clinician had to draw (Vaassen et al., Phys Imaging
Radiat Oncol 2020;13:1-6).

Definition used here: slice by slice (axial, the array's k axis), the length in mm of the FINAL
contour that lies farther than the tolerance from the AI contour of the same slice, summed over
slices. Contours are the exact voxel-edge polygons of ``contours.py`` (the polylines the RTSTRUCT
export draws, before simplification), so a contour's length is that of its pixel edges. Each
point of a final contour is measured to the nearest point of the AI polylines (not only their
vertices), and the part of each edge within the tolerance is found exactly (a line meets the
tolerance band around a segment in one interval), so there is no sampling error.

- A slice whose final and AI masks are equal adds nothing.
- A final contour on a slice where the AI has none counts whole (it was drawn from scratch).
- An AI contour the clinician deleted (no final contour on the slice) adds nothing: deleting is
  not drawing.
"""

from __future__ import annotations

import numpy as np

_SLICE_GAP = 1.0e7  # mm between slices in the k-d tree, so that only edges of one slice meet


def boundary_edges(masks: np.ndarray, spacing_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel edges between inside and outside of a stack of 2D masks (k, j, i).

    Returns (start points, end points, slice index): points are (x, y) in mm with x along i and
    y along j, on the pixel corners.
    """
    sx, sy = (float(v) for v in spacing_xy)
    p = np.pad(np.asarray(masks, dtype=bool), ((0, 0), (1, 1), (1, 1)))
    # horizontal edge on corner row y between pixel rows y-1 and y, from x to x+1
    k, y, x = np.nonzero(p[:, 1:, 1:-1] != p[:, :-1, 1:-1])
    h0 = np.column_stack([x * sx, y * sy])
    h1 = np.column_stack([(x + 1) * sx, y * sy])
    hk = k
    # vertical edge on corner column x between pixel columns x-1 and x, from y to y+1
    k, y, x = np.nonzero(p[:, 1:-1, 1:] != p[:, 1:-1, :-1])
    v0 = np.column_stack([x * sx, y * sy])
    v1 = np.column_stack([x * sx, (y + 1) * sy])
    return (np.vstack([h0, v0]).astype(np.float64), np.vstack([h1, v1]).astype(np.float64),
            np.concatenate([hk, k]))


def _slab(alpha: np.ndarray, beta: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Interval of t where lo <= alpha + t beta <= hi (empty: start > end)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo = (lo - alpha) / beta
        t_hi = (hi - alpha) / beta
    start = np.minimum(t_lo, t_hi)
    end = np.maximum(t_lo, t_hi)
    flat = np.abs(beta) < 1e-12
    inside = (alpha >= lo) & (alpha <= hi)
    start = np.where(flat, np.where(inside, -np.inf, np.inf), start)
    end = np.where(flat, np.where(inside, np.inf, -np.inf), end)
    return start, end


def _disk(p0: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval of t where |p0 + t d - centre| <= radius (empty: start > end)."""
    w = p0 - centre
    a = np.sum(d * d, axis=1)
    b = 2.0 * np.sum(d * w, axis=1)
    c = np.sum(w * w, axis=1) - radius * radius
    disc = b * b - 4.0 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    ok = disc >= 0
    return np.where(ok, (-b - root) / (2 * a), np.inf), np.where(ok, (-b + root) / (2 * a), -np.inf)


def _covered_intervals(p0, p1, q0, q1, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For pairs of segments P (final) and Q (AI): the interval of P's parameter t in [0, 1] whose
    points are within ``tolerance`` of Q (the band around a segment is convex, so one interval)."""
    d = p1 - p0
    e = q1 - q0
    length_q = np.sqrt(np.sum(e * e, axis=1))
    u = e / length_q[:, None]
    n = np.column_stack([-u[:, 1], u[:, 0]])
    w = p0 - q0
    # the rectangle swept by the segment's normal: 0 <= along <= |Q|, |across| <= tolerance
    s1, e1 = _slab(np.sum(w * u, axis=1), np.sum(d * u, axis=1), 0.0, length_q)
    s2, e2 = _slab(np.sum(w * n, axis=1), np.sum(d * n, axis=1), -tolerance, tolerance)
    rect_s, rect_e = np.maximum(s1, s2), np.minimum(e1, e2)
    da_s, da_e = _disk(p0, d, q0, tolerance)
    db_s, db_e = _disk(p0, d, q1, tolerance)
    starts = np.column_stack([rect_s, da_s, db_s])
    ends = np.column_stack([rect_e, da_e, db_e])
    nonempty = starts <= ends
    start = np.min(np.where(nonempty, starts, np.inf), axis=1)
    end = np.max(np.where(nonempty, ends, -np.inf), axis=1)
    return np.clip(start, 0.0, 1.0), np.clip(end, 0.0, 1.0)


def _union_length(edge: np.ndarray, start: np.ndarray, end: np.ndarray, n_edges: int) -> np.ndarray:
    """Per edge, the measure of the union of its intervals (all within [0, 1])."""
    covered = np.zeros(n_edges)
    keep = end > start
    edge, start, end = edge[keep], start[keep], end[keep]
    if len(edge) == 0:
        return covered
    # groups 2 apart on one line so that a running maximum never crosses from one edge to the next
    offset = 2.0 * edge
    order = np.lexsort((start, edge))
    s = start[order] + offset[order]
    e = end[order] + offset[order]
    reach = np.maximum.accumulate(e)
    previous = np.concatenate([[-np.inf], reach[:-1]])
    gained = np.maximum(0.0, e - np.maximum(s, previous))
    np.add.at(covered, edge[order], gained)
    return covered


def added_path_length_per_slice(final: np.ndarray, ai: np.ndarray, spacing_xy: tuple[float, float],
                                tolerance_mm: float) -> np.ndarray:
    """APL (mm) of each slice of two mask stacks (k, j, i); ``spacing_xy`` = (mm along i, along j)."""
    from scipy.spatial import cKDTree

    final = np.asarray(final, dtype=bool)
    ai = np.asarray(ai, dtype=bool)
    if final.shape != ai.shape or final.ndim != 3:
        raise ValueError("added path length needs two 3D masks of the same shape")
    per_slice = np.zeros(final.shape[0])
    changed = np.flatnonzero(np.any(final != ai, axis=(1, 2)) & np.any(final, axis=(1, 2)))
    if len(changed) == 0:
        return per_slice
    f0, f1, fk = boundary_edges(final[changed], spacing_xy)
    a0, a1, ak = boundary_edges(ai[changed], spacing_xy)
    f_len = np.sqrt(np.sum((f1 - f0) ** 2, axis=1))
    covered = np.zeros(len(f0))
    if len(a0):
        longest = float(max(spacing_xy))
        radius = tolerance_mm + longest  # half of each edge's length, plus the tolerance
        f_mid = np.column_stack([(f0 + f1) / 2, fk * _SLICE_GAP])
        a_mid = np.column_stack([(a0 + a1) / 2, ak * _SLICE_GAP])
        pairs = cKDTree(f_mid).sparse_distance_matrix(cKDTree(a_mid), radius, output_type="ndarray")
        fi = pairs["i"].astype(np.int64)  # the ndarray output keeps pairs at distance 0
        ai_idx = pairs["j"].astype(np.int64)
        if len(fi):
            start, end = _covered_intervals(f0[fi], f1[fi], a0[ai_idx], a1[ai_idx], float(tolerance_mm))
            covered = _union_length(fi, start, end, len(f0))
    uncovered = f_len * (1.0 - np.minimum(covered, 1.0))
    np.add.at(per_slice, changed[fk], uncovered)
    return per_slice


def added_path_length(final: np.ndarray, ai: np.ndarray, spacing_xy: tuple[float, float], tolerance_mm: float) -> float:
    """Total APL (mm) over all slices; see the module docstring for the definition."""
    return float(np.sum(added_path_length_per_slice(final, ai, spacing_xy, tolerance_mm)))
