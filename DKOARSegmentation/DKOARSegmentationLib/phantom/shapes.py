"""Solid primitives in millimetres, evaluated on coordinate arrays.

Each shape knows a bounding box (so only the voxels near it are evaluated) and answers
``contains(x, y, z)`` for broadcastable coordinate arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Vec = tuple[float, float, float]


class Shape:
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __and__(self, other: "Shape") -> "Shape":
        return Combination(self, other, "and")

    def __sub__(self, other: "Shape") -> "Shape":
        return Combination(self, other, "minus")

    def __or__(self, other: "Shape") -> "Shape":
        return Combination(self, other, "or")


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation about z (yaw), then x (pitch: chin up/down), then y (roll)."""
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return ry @ rx @ rz


@dataclass
class Ellipsoid(Shape):
    centre: Vec
    semi: Vec
    rot: np.ndarray | None = None  # local orientation (columns: the semi-axes' directions)

    def bounds(self):
        c = np.asarray(self.centre, float)
        s = np.asarray(self.semi, float)
        r = np.eye(3) if self.rot is None else np.asarray(self.rot)
        half = np.sqrt(((r * s) ** 2).sum(axis=1))
        return c - half, c + half

    def contains(self, x, y, z):
        dx, dy, dz = x - self.centre[0], y - self.centre[1], z - self.centre[2]
        if self.rot is not None:
            r = self.rot
            dx, dy, dz = (
                r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
            )
        a, b, c = self.semi
        return (dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2 <= 1.0


@dataclass
class Tube(Shape):
    """Points within ``radius`` of a polyline (rounded ends)."""

    points: tuple[Vec, ...]
    radius: float

    def bounds(self):
        p = np.asarray(self.points, float)
        return p.min(axis=0) - self.radius, p.max(axis=0) + self.radius

    def contains(self, x, y, z):
        inside = None
        pts = np.asarray(self.points, float)
        for p0, p1 in zip(pts[:-1], pts[1:]):
            d = p1 - p0
            length2 = float(d @ d)
            t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / length2
            t = np.clip(t, 0.0, 1.0)
            dist2 = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2
            hit = dist2 <= self.radius**2
            inside = hit if inside is None else inside | hit
        return inside


@dataclass
class Box(Shape):
    lo: Vec
    hi: Vec

    def bounds(self):
        return np.asarray(self.lo, float), np.asarray(self.hi, float)

    def contains(self, x, y, z):
        return (
            (x >= self.lo[0]) & (x <= self.hi[0]) & (y >= self.lo[1]) & (y <= self.hi[1])
            & (z >= self.lo[2]) & (z <= self.hi[2])
        )


@dataclass
class EllipticCylinder(Shape):
    """Vertical (along z) cylinder of elliptic cross-section."""

    centre_xy: tuple[float, float]
    semi_xy: tuple[float, float]
    z_range: tuple[float, float]

    def bounds(self):
        (cx, cy), (a, b) = self.centre_xy, self.semi_xy
        return np.array([cx - a, cy - b, self.z_range[0]]), np.array([cx + a, cy + b, self.z_range[1]])

    def contains(self, x, y, z):
        (cx, cy), (a, b) = self.centre_xy, self.semi_xy
        return (((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0) & (z >= self.z_range[0]) & (z <= self.z_range[1])


@dataclass
class ArchBar(Shape):
    """A U-shaped bar: the points near the front half of a horizontal ellipse (mandible, maxilla).

    The centre line is the half-ellipse of semi-axes ``semi_xy`` around ``centre_xy`` on the
    anterior side (y < centre); the bar is ``thickness`` mm wide radially and spans ``z_range``.
    """

    centre_xy: tuple[float, float]
    semi_xy: tuple[float, float]
    thickness: float
    z_range: tuple[float, float]

    def bounds(self):
        (cx, cy), (a, b), t = self.centre_xy, self.semi_xy, self.thickness
        return np.array([cx - a - t, cy - b - t, self.z_range[0]]), np.array([cx + a + t, cy + t, self.z_range[1]])

    def contains(self, x, y, z):
        (cx, cy), (a, b) = self.centre_xy, self.semi_xy
        rho = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
        half = self.thickness / 2.0 / ((a + b) / 2.0)
        return (np.abs(rho - 1.0) <= half) & (y <= cy) & (z >= self.z_range[0]) & (z <= self.z_range[1])


@dataclass
class SheetAroundTube(Shape):
    """A curved sheet: radii [r_in, r_out] around a vertical-ish polyline axis, between two
    heights, leaving out the angular sector that faces anteriorly (-y) by ``open_deg``."""

    axis: tuple[Vec, ...]
    r_in: float
    r_out: float
    z_range: tuple[float, float]
    open_deg: float

    def bounds(self):
        p = np.asarray(self.axis, float)
        lo, hi = p.min(axis=0) - self.r_out, p.max(axis=0) + self.r_out
        lo[2], hi[2] = self.z_range
        return lo, hi

    def _axis_xy(self, z):
        p = np.asarray(sorted(self.axis, key=lambda q: q[2]), float)
        return np.interp(z, p[:, 2], p[:, 0]), np.interp(z, p[:, 2], p[:, 1])

    def contains(self, x, y, z):
        ax, ay = self._axis_xy(z)
        dx, dy = x - ax, y - ay
        r = np.sqrt(dx**2 + dy**2)
        # angle from the anterior direction (0, -1)
        cos_from_front = -dy / np.maximum(r, 1e-9)
        front = cos_from_front > np.cos(np.radians(self.open_deg / 2.0))
        return (r >= self.r_in) & (r <= self.r_out) & ~front & (z >= self.z_range[0]) & (z <= self.z_range[1])


@dataclass
class Combination(Shape):
    """Two shapes combined: the points in both ("and"), in either ("or"), or in ``a`` only ("minus")."""

    a: Shape
    b: Shape
    operator: str

    def bounds(self):
        (alo, ahi), (blo, bhi) = self.a.bounds(), self.b.bounds()
        if self.operator == "and":
            return np.maximum(alo, blo), np.minimum(ahi, bhi)
        if self.operator == "or":
            return np.minimum(alo, blo), np.maximum(ahi, bhi)
        return alo, ahi

    def contains(self, x, y, z):
        inside_a, inside_b = self.a.contains(x, y, z), self.b.contains(x, y, z)
        if self.operator == "and":
            return inside_a & inside_b
        if self.operator == "or":
            return inside_a | inside_b
        return inside_a & ~inside_b


@dataclass
class Jittered(Shape):
    """A shape moved by ``shift`` and scaled by ``scale`` about ``centre`` (per-structure variation)."""

    shape: Shape
    centre: np.ndarray
    shift: np.ndarray
    scale: np.ndarray

    def bounds(self):
        lo, hi = self.shape.bounds()
        return (
            self.centre + self.shift + (lo - self.centre) * self.scale,
            self.centre + self.shift + (hi - self.centre) * self.scale,
        )

    def contains(self, x, y, z):
        c, s, d = self.centre, self.scale, self.shift
        return self.shape.contains(
            c[0] + (x - c[0] - d[0]) / s[0], c[1] + (y - c[1] - d[1]) / s[1], c[2] + (z - c[2] - d[2]) / s[2]
        )
