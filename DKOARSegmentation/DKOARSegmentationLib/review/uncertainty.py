"""Where to look first: the model's uncertainty (``model.uncertainty``) per structure and slice,
ranked into a short list of (structure, slice range) to review.

A structure's score is the width of its uncertain band: the uncertain volume that touches it
divided by the area of its surface (the surface the surface Dice measures), in millimetres, over
the structure's surface tolerance from the catalogue. A score of 1 says the model is unsure over
about one tolerance all round. A thin or flat structure has far more surface than a ball of its
volume, so the same uncertain volume is a thinner band on it. A structure not found has no
surface: its uncertain volume counts over the surface of a 1 mm^3 ball. The slice range of an
entry is the run of slices around the most uncertain one where the uncertainty stays above half
of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REVIEW_LENGTH = 8  # entries in the review list
MIN_SCORE = 0.05  # below this a structure is not worth a look
SLICE_MARGIN = 2  # slices beyond a structure's own where its uncertainty still counts
_NO_SURFACE_MM2 = 4.836  # the area of a ball of 1 mm^3


@dataclass
class StructureUncertainty:
    structure: str
    uncertain_ml: float
    band_mm: float
    score: float
    per_slice_ml: np.ndarray  # along the volume's slices


def structure_uncertainty(slice_uncertainty, mapping, segmentation, slice_axis: int = 0
                          ) -> dict[str, StructureUncertainty]:
    """Per catalogue structure of a result, from the per model label table and the label mapping
    (a merged left/right label split by side), counted on the structure's own slices and
    ``SLICE_MARGIN`` beyond (elsewhere it was only a runner-up: noise); a structure not found
    counts everywhere (it may be wherever it is uncertain)."""
    from scipy import ndimage

    from ..monitoring.surface_metrics import surface_area

    boxes = ndimage.find_objects(segmentation.labels)
    values = slice_uncertainty.values
    spacing = tuple(reversed(np.linalg.norm(np.asarray(segmentation.affine, dtype=float)[:3, :3], axis=0)))
    profiles: dict[str, np.ndarray] = {}
    for value, structure in mapping.direct.items():
        if value < len(values):
            profiles[structure.name] = values[value].sum(axis=1)
    for value, (left, right) in mapping.merged.items():
        if value < len(values):
            for structure, side in ((left, 1), (right, 0)):
                if structure is not None:
                    profiles[structure.name] = values[value][:, side].copy()
    out = {}
    for structure in segmentation.structures:
        profile = profiles.get(structure.name)
        if profile is None:
            continue
        box = boxes[structure.label - 1] if structure.label <= len(boxes) else None
        area = _NO_SURFACE_MM2
        if box is not None:
            keep = np.zeros(len(profile), dtype=bool)
            keep[max(box[slice_axis].start - SLICE_MARGIN, 0):box[slice_axis].stop + SLICE_MARGIN] = True
            profile = np.where(keep, profile, 0.0)
            area = max(surface_area(segmentation.labels[box] == structure.label, spacing), _NO_SURFACE_MM2)
        uncertain = float(profile.sum())
        band = 1000.0 * uncertain / area
        out[structure.name] = StructureUncertainty(structure.name, uncertain, band,
                                                   band / max(structure.tolerance_mm, 0.1), profile)
    return out


def _slice_range(profile: np.ndarray) -> tuple[int, int]:
    peak = int(np.argmax(profile))
    threshold = 0.5 * profile[peak]
    lo = hi = peak
    while lo > 0 and profile[lo - 1] >= threshold:
        lo -= 1
    while hi + 1 < len(profile) and profile[hi + 1] >= threshold:
        hi += 1
    return lo, hi


def review_list(per_structure: dict[str, StructureUncertainty], segmentation, slice_axis: int = 0,
                length: int = REVIEW_LENGTH) -> list[dict]:
    """The ranked (structure, slice range) entries to review first, each with the LPS point to
    jump to (the structure's centre on those slices, else the slices' centre)."""
    ranked = sorted((u for u in per_structure.values() if u.score >= MIN_SCORE and u.uncertain_ml > 0),
                    key=lambda u: -u.score)[:length]
    labels = segmentation.labels
    affine = np.asarray(segmentation.affine, dtype=float)
    by_name = {s.name: s for s in segmentation.structures}
    out = []
    for rank, u in enumerate(ranked, start=1):
        lo, hi = _slice_range(u.per_slice_ml)
        index = [slice(None)] * 3
        index[slice_axis] = slice(lo, hi + 1)
        block = labels[tuple(index)]
        kji = np.argwhere(block == by_name[u.structure].label)
        if len(kji):
            kji[:, slice_axis] += lo
            centre = kji.mean(axis=0)
        else:
            centre = (np.array(labels.shape, dtype=float) - 1) / 2.0
            centre[slice_axis] = (lo + hi) / 2.0
        lps = affine[:3, :3] @ centre[::-1] + affine[:3, 3]
        ends = [affine[:3, :3] @ np.where(np.arange(3) == 2 - slice_axis, k, 0) + affine[:3, 3] for k in (lo, hi)]
        out.append({"rank": rank, "structure": u.structure, "first_slice": lo, "last_slice": hi,
                    "z_mm": [round(float(min(e[2] for e in ends)), 2), round(float(max(e[2] for e in ends)), 2)],
                    "centre_lps": [round(float(v), 2) for v in lps], "score": round(u.score, 3),
                    "uncertain_ml": round(u.uncertain_ml, 3), "band_mm": round(u.band_mm, 2)})
    return out


def uncertainty_record(per_structure: dict[str, StructureUncertainty], method: str) -> dict:
    """What run.json keeps: the method, and each structure's score, band and uncertain volume."""
    return {"method": method,
            "structures": {name: {"score": round(u.score, 3), "band_mm": round(u.band_mm, 2),
                                  "uncertain_ml": round(u.uncertain_ml, 3)} for name, u in per_structure.items()}}
