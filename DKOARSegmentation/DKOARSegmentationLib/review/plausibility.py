"""Plausibility checks of a result, structure by structure, in patient LPS coordinates (+x the
patient's left, +y posterior, +z superior, whatever the patient position on the table):

- missing: a structure that was asked for has no voxel (error);
- volume: outside the catalogue's adult range (warning; error beyond twice as far), or a
  left/right pair of which one is more than ``PAIR_RATIO`` times the other (warning);
- fragmented: more connected parts than the structure has (the catalogue's ``parts``), with the
  size and distance of the strays (warning when a stray is sizeable, info for specks);
- side: a left structure whose centre lies right of the body's midline, or the reverse (error;
  both sides of a swapped pair are named);
- outside_body: part of the structure outside the patient's body (warning; error from a quarter);
- order: an impossible order against a neighbour (error): the lens behind the centre of the eye,
  the brainstem not meeting the spinal cord from above, the glottic larynx above the supraglottic,
  the chiasm not between and behind the optic nerves, the constrictors out of order.

Every flag is one sentence with the figures that raised it.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..structures.catalogue import Structure
from ..volume import Volume
from .flags import Flag
from .geometry import StructureGeometry, measure_contours

PAIR_RATIO = 2.5  # one side of a pair this many times the other's volume
SIDE_MARGIN_MM = 2.0  # a centre within this of the midline is on neither side
OUTSIDE_WARNING, OUTSIDE_ERROR = 0.02, 0.25  # fraction of the voxels outside the body
STRAY_MIN_ML, STRAY_MIN_FRACTION = 0.05, 0.05  # a stray this large is a warning; smaller specks, near or far, info
NEURAL_AXIS_GAP_MM = 10.0  # brainstem and spinal cord meet at the foramen magnum


def _mm(v: float) -> str:
    return f"{abs(v):.0f} mm"


def _ml(v: float) -> str:
    return f"{v:.2f} ml" if v < 10 else f"{v:.0f} ml"


def _volume_flags(s: Structure, g: StructureGeometry) -> list[Flag]:
    if s.volume_range_ml is None or g.voxels == 0:
        return []
    low, high = s.volume_range_ml
    if low <= g.volume_ml <= high:
        return []
    severity = "error" if g.volume_ml < low / 2 or g.volume_ml > high * 2 else "warning"
    side = "below" if g.volume_ml < low else "above"
    return [Flag(s.name, "volume", severity, f"{s.name} is {_ml(g.volume_ml)}, {side} the adult range "
                                             f"{low:g}-{high:g} ml.")]


def _pair_flags(structures: dict[str, Structure], geometry: dict[str, StructureGeometry]) -> list[Flag]:
    out = []
    for s in structures.values():
        if s.laterality != "L":
            continue
        other = structures.get(s.name[:-2] + "_R")
        g, h = geometry.get(s.name), geometry.get(other.name) if other else None
        if other is None or g is None or h is None or not g.voxels or not h.voxels:
            continue
        big, small = (g, h) if g.volume_ml >= h.volume_ml else (h, g)
        if big.volume_ml > PAIR_RATIO * small.volume_ml:
            out.append(Flag(big.name, "volume", "warning",
                            f"{big.name} is {big.volume_ml / small.volume_ml:.1f} times the volume of {small.name} "
                            f"({_ml(big.volume_ml)} against {_ml(small.volume_ml)})."))
    return out


def _fragment_flags(s: Structure, g: StructureGeometry) -> list[Flag]:
    if len(g.parts) <= s.parts:
        return []
    strays = sorted(g.parts[s.parts:], key=lambda p: -p.volume_ml)
    biggest = strays[0]
    farthest = max(strays, key=lambda p: p.distance_mm)
    sizeable = biggest.volume_ml >= STRAY_MIN_ML or biggest.volume_ml >= STRAY_MIN_FRACTION * g.volume_ml
    expected = f"{s.parts} expected" if s.parts > 1 else "one expected"
    message = (f"{s.name} is in {len(g.parts)} parts ({expected}): {len(strays)} stray part(s) of "
               f"{sum(p.volume_ml for p in strays):.3f} ml in all, the largest {biggest.volume_ml:.3f} ml, "
               f"the farthest {farthest.distance_mm:.0f} mm from the main part.")
    return [Flag(s.name, "fragmented", "warning" if sizeable else "info", message)]


def _side_flags(structures: dict[str, Structure], geometry: dict[str, StructureGeometry],
                midline_x: float) -> list[Flag]:
    wrong = {}
    for s in structures.values():
        g = geometry.get(s.name)
        if s.laterality not in ("L", "R") or g is None or not g.voxels:
            continue
        offset = float(g.centroid[0] - midline_x)  # +: patient's left
        if (s.laterality == "L" and offset < -SIDE_MARGIN_MM) or (s.laterality == "R" and offset > SIDE_MARGIN_MM):
            wrong[s.name] = offset
    out = []
    for name, offset in wrong.items():
        side = "left" if offset > 0 else "right"
        partner = name[:-1] + ("R" if name.endswith("_L") else "L")
        swapped = f"; {name} and {partner} look swapped" if partner in wrong else ""
        out.append(Flag(name, "side", "error", f"{name} lies on the patient's {side}, {_mm(offset)} from the "
                                                f"midline{swapped}."))
    return out


def _outside_flags(contours, structures: dict[str, Structure], ct: Volume) -> list[Flag]:
    from ..input.body import body_outline

    step = 2
    body = body_outline(ct.voxels, step=step)
    out = []
    for name, (box, mask) in contours.items.items():
        if box is None or name not in structures:
            continue
        kji = np.argwhere(mask) + np.array([b.start for b in box])
        inside = body[kji[:, 0], np.minimum(kji[:, 1] // step, body.shape[1] - 1),
                      np.minimum(kji[:, 2] // step, body.shape[2] - 1)]
        fraction = 1.0 - float(inside.mean())
        if fraction > OUTSIDE_WARNING:
            severity = "error" if fraction >= OUTSIDE_ERROR else "warning"
            out.append(Flag(name, "outside_body", severity,
                            f"{100 * fraction:.0f} % of {name} lies outside the patient's body."))
    return out


def _centre(geometry, name, axis):
    g = geometry.get(name)
    return None if g is None or not g.voxels else float(g.centroid[axis])


def _order_flags(structures: dict[str, Structure], geometry: dict[str, StructureGeometry]) -> list[Flag]:
    out = []

    def flag(name, message):
        out.append(Flag(name, "order", "error", message))

    x, y, z = 0, 1, 2
    for side in ("L", "R"):
        for front in (f"Lens_{side}", f"EyeFront_{side}"):
            a, b = _centre(geometry, front, y), _centre(geometry, f"EyeBack_{side}", y)
            if a is not None and b is not None and a >= b:
                flag(front, f"{front} lies {_mm(a - b)} behind the centre of EyeBack_{side}; it belongs at the "
                            "front of the eye.")
    stem, cord = geometry.get("Brainstem"), geometry.get("SpinalCord")
    if stem is not None and cord is not None and stem.voxels and cord.voxels:
        if stem.centroid[z] <= cord.centroid[z]:
            flag("Brainstem", f"Brainstem lies {_mm(cord.centroid[z] - stem.centroid[z])} below the centre of "
                              "SpinalCord; the brainstem is cranial to the cord.")
        elif stem.z_range[0] - cord.z_range[1] > NEURAL_AXIS_GAP_MM:
            flag("Brainstem", f"Brainstem ends {_mm(stem.z_range[0] - cord.z_range[1])} above the top of "
                              "SpinalCord; they meet at the foramen magnum.")
    a, b = _centre(geometry, "LarynxG", z), _centre(geometry, "LarynxSG", z)
    if a is not None and b is not None and a >= b:
        flag("LarynxG", f"LarynxG lies {_mm(a - b)} above LarynxSG; the glottis is caudal to the supraglottis.")
    chiasm = _centre(geometry, "Chiasm", x)
    left, right = _centre(geometry, "OpticNerve_L", x), _centre(geometry, "OpticNerve_R", x)
    if chiasm is not None and left is not None and right is not None:
        if not right < chiasm < left:
            flag("Chiasm", "Chiasm is not between the optic nerves (left to right: "
                           f"{chiasm - right:+.0f} mm from OpticNerve_R, {chiasm - left:+.0f} mm from OpticNerve_L).")
        elif _centre(geometry, "Chiasm", y) <= (_centre(geometry, "OpticNerve_L", y)
                                                 + _centre(geometry, "OpticNerve_R", y)) / 2:
            flag("Chiasm", "Chiasm lies in front of the optic nerves' centres; it joins them behind the orbits.")
    for upper, lower in (("PCM_Up", "PCM_Mid"), ("PCM_Mid", "PCM_Low")):
        a, b = _centre(geometry, upper, z), _centre(geometry, lower, z)
        if a is not None and b is not None and a <= b:  # either may be the wrong one: both are named
            message = f"{upper} lies {_mm(b - a)} below {lower}; the constrictors run {upper} above {lower}."
            flag(upper, message)
            flag(lower, message)
    return out


def check_contours(contours, ct: Volume, expected: Iterable[Structure], midline_x: float | None = None
                   ) -> list[Flag]:
    """Every flag of the structures ``expected`` in ``contours`` (a ``monitoring.contour_sets.ContourSet``
    on the CT's grid). ``midline_x``: the body's midline (LPS x); measured on the CT when None."""
    from ..input.body import body_midline_x

    structures = {s.name: s for s in expected}
    geometry = {name: g for name, g in measure_contours(contours).items() if name in structures}
    flags = [Flag(s.name, "missing", "error", f"{s.name} was looked for and not found (no voxel).")
             for s in structures.values() if geometry.get(s.name) is None or not geometry[s.name].voxels]
    for s in structures.values():
        g = geometry.get(s.name)
        if g is not None and g.voxels:
            flags += _volume_flags(s, g) + _fragment_flags(s, g)
    flags += _pair_flags(structures, geometry)
    flags += _side_flags(structures, geometry, body_midline_x(ct) if midline_x is None else midline_x)
    flags += _outside_flags(contours, structures, ct)
    flags += _order_flags(structures, geometry)
    return flags


def check_segmentation(segmentation, ct: Volume) -> list[Flag]:
    """The flags of a result: a label map in catalogue numbering on the CT's grid, every structure
    it carries (those the model provides and the site chose) expected."""
    from scipy import ndimage

    from ..monitoring.contour_sets import ContourSet

    labels = segmentation.labels
    boxes = ndimage.find_objects(labels)
    items = {}
    for s in segmentation.structures:
        box = boxes[s.label - 1] if s.label <= len(boxes) else None
        items[s.name] = (box, labels[box] == s.label) if box is not None else (None, None)
    contours = ContourSet(np.asarray(segmentation.affine, dtype=float), tuple(labels.shape), items,
                          {s.name: s for s in segmentation.structures})
    return check_contours(contours, ct, segmentation.structures)
