"""A trainee's attempt at one structure, scored against a reference, border by border.

The scores are exactly those of ``dkoar compare`` (``monitoring.comparison``, same code path)
with the attempt in the place of the AI contours and the reference in that of the final ones:
Dice, surface Dice at the catalogue's tolerance, HD95, mean surface distance, added path length
(the length of the reference's contour farther than the tolerance from the attempt: what would
still have to be drawn), volumes. ``dkoar compare --ai ATTEMPT --final REFERENCE`` gives the same
numbers. Beside them: how far each border lies beyond or short of the reference's in patient
directions (``borders``), and the feedback in words (``feedback``).

An empty attempt is a result, not an error: Dice 0, surface Dice 0, HD95 undefined, no borders,
and one sentence saying that nothing was drawn. A reference without the structure is an error
(there is nothing to learn against).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import DKOARError
from ..monitoring.comparison import compare_contour_sets
from ..monitoring.contour_sets import ContourSet, read_contour_set
from ..structures.catalogue import Catalogue, default_catalogue
from ..volume import Volume
from .borders import DIRECTIONS, border_differences, extents
from .feedback import border_label, feedback_sentences


def _rounded(value):
    return None if value is None else round(float(value), 6)


@dataclass
class PracticeScore:
    structure: str
    laterality: str
    dice: float
    surface_dice: float
    tolerance_mm: float
    hd95_mm: float | None
    msd_mm: float | None
    apl_mm: float
    volume_reference_ml: float
    volume_attempt_ml: float
    borders_mm: dict[str, float | None]
    feedback: list[str]

    @property
    def attempt_empty(self) -> bool:
        return self.volume_attempt_ml == 0

    def as_json(self) -> dict:
        """The feedback document of ``dkoar practice score``."""
        return {
            "structure": self.structure,
            **{k: _rounded(getattr(self, k)) for k in ("dice", "surface_dice", "tolerance_mm", "hd95_mm", "msd_mm",
                                                        "apl_mm", "volume_reference_ml", "volume_attempt_ml")},
            "borders_mm": {d: _rounded(self.borders_mm[d]) for d in DIRECTIONS},
            "border_names": {d: border_label(d, self.laterality) for d in DIRECTIONS},
            "feedback": list(self.feedback),
        }

    def summary_lines(self) -> list[str]:
        """The scores and the feedback in words, as the command line prints them."""
        hd95 = "undefined" if self.hd95_mm is None else f"{self.hd95_mm:.1f} mm"
        lines = [f"{self.structure}: Dice {self.dice:.3f}, surface Dice {self.surface_dice:.3f} at "
                 f"{self.tolerance_mm:g} mm, HD95 {hd95}, added path length {self.apl_mm:.0f} mm"]
        change = ""
        if self.volume_reference_ml > 0:
            change = f" ({100.0 * (self.volume_attempt_ml / self.volume_reference_ml - 1.0):+.0f} %)"
        lines.append(f"volume {self.volume_attempt_ml:.2f} ml drawn, {self.volume_reference_ml:.2f} ml in the "
                     f"reference{change}")
        if not self.attempt_empty:
            parts = []
            for d in DIRECTIONS:
                label = border_label(d, self.laterality)
                name = label if label == d else f"{label} ({d})"
                parts.append(f"{name} {self.borders_mm[d]:+.1f}")
            lines.append("borders, mm beyond (+) or short of (-) the reference: " + ", ".join(parts))
        lines += [f"  - {sentence}" for sentence in self.feedback]
        return lines

    def html(self) -> str:
        """The same as simple HTML (Qt's rich text subset; the browser station)."""
        lines = self.summary_lines()
        head, rest = lines[:-len(self.feedback)], self.feedback
        return ("<p><b>" + html.escape(head[0]) + "</b><br>" + "<br>".join(html.escape(x) for x in head[1:])
                + "</p><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in rest) + "</ul>")


def _only(contours: ContourSet, structure) -> ContourSet:
    return ContourSet(contours.affine, contours.shape,
                      {k: v for k, v in contours.items.items() if k == structure.name}, {structure.name: structure})


def score_contour_sets(reference: ContourSet, attempt: ContourSet, name: str,
                       catalogue: Catalogue | None = None) -> PracticeScore:
    """Score the attempt's ``name`` (a catalogue name or alias) against the reference's."""
    catalogue = catalogue or default_catalogue()
    structure = catalogue.by_name(name)
    if reference.shape != attempt.shape or not np.allclose(reference.affine, attempt.affine, atol=1e-3):
        raise DKOARError("the attempt is not on the grid of the reference; draw it on the same CT")
    reference_box, reference_crop = reference.items.get(structure.name, (None, None))
    if reference_box is None:
        held = ", ".join(n for n, (box, _) in reference.items.items() if box is not None)
        raise DKOARError(f"the reference has no {structure.name} (it holds {held or 'no structure'}); "
                         "practise one of its structures")
    result = compare_contour_sets(_only(attempt, structure), _only(reference, structure))[structure.name]
    attempt_box, attempt_crop = attempt.items.get(structure.name, (None, None))
    reference_extents = extents(reference_crop, reference.affine, tuple(s.start for s in reference_box))
    attempt_extents = None if attempt_box is None else \
        extents(attempt_crop, attempt.affine, tuple(s.start for s in attempt_box))
    borders = border_differences(reference_extents, attempt_extents)
    empty = result.volume_ai_ml == 0
    return PracticeScore(
        structure=structure.name, laterality=structure.laterality, dice=result.dice,
        surface_dice=result.surface_dice, tolerance_mm=result.tolerance_mm, hd95_mm=result.hd95_mm,
        msd_mm=result.msd_mm, apl_mm=result.apl_mm, volume_reference_ml=result.volume_final_ml,
        volume_attempt_ml=result.volume_ai_ml, borders_mm=borders,
        feedback=feedback_sentences(borders, result.tolerance_mm, structure.laterality, attempt_empty=empty))


def _on_ct(contours: ContourSet, ct: Volume, path: Path) -> ContourSet:
    if contours.shape != ct.shape or not np.allclose(contours.affine, ct.affine, atol=1e-3):
        raise DKOARError(f"{path}: not on the grid of the CT; give a label map or RTSTRUCT drawn on that CT")
    return contours


def score_files(reference_path: Path | str, attempt_path: Path | str, ct: Volume, name: str,
                catalogue: Catalogue | None = None) -> PracticeScore:
    """Score from files: each an RTSTRUCT on ``ct`` or a label map (catalogue numbering) on its grid."""
    catalogue = catalogue or default_catalogue()
    catalogue.by_name(name)  # an unknown name is refused before any file is read
    reference = _on_ct(read_contour_set(reference_path, ct, catalogue), ct, Path(reference_path))
    attempt = _on_ct(read_contour_set(attempt_path, ct, catalogue), ct, Path(attempt_path))
    return score_contour_sets(reference, attempt, name, catalogue)


def write_feedback(score: PracticeScore, out: Path | str) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(score.as_json(), indent=2) + "\n", encoding="utf-8")
    return out
