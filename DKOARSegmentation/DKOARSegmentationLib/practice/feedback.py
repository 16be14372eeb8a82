"""The words of an attempt's feedback: which borders are off, by how much, in which sense.

A border is named when the attempt's extent in that direction differs from the reference's by
more than the structure's surface tolerance (the catalogue's, as for surface Dice), largest first:

- cranial: "too high" when the attempt reaches beyond the reference, "too low" when it stops short;
- caudal: "too low" beyond, "too high" short;
- anterior, posterior, and the sides: "too far anterior" (posterior, lateral, medial, left, right)
  beyond, "short" when it stops short.

A paired structure's left and right borders are called lateral and medial (for Parotid_L, the
left border is lateral); a midline structure keeps left and right.
"""

from __future__ import annotations

from .borders import DIRECTIONS, side_names

_VERTICAL_WORDS = {"cranial": ("too high", "too low"), "caudal": ("too low", "too high")}


def border_label(direction: str, laterality: str) -> str:
    """How the border in patient direction ``direction`` is called for a structure."""
    return side_names(laterality).get(direction, direction)


def border_sentence(direction: str, value_mm: float, laterality: str) -> str:
    """One border's difference in words, e.g. "caudal border 7.5 mm too low"."""
    label = border_label(direction, laterality)
    if direction in _VERTICAL_WORDS:
        beyond, short = _VERTICAL_WORDS[direction]
    else:
        beyond, short = f"too far {label}", "short"
    return f"{label} border {abs(value_mm):.1f} mm {beyond if value_mm > 0 else short}"


def feedback_sentences(borders_mm: dict[str, float | None], tolerance_mm: float, laterality: str,
                       attempt_empty: bool = False) -> list[str]:
    """The sentences for the trainee, largest difference first."""
    if attempt_empty:
        return ["the attempt is empty: nothing was drawn for this structure"]
    off = [(d, borders_mm[d]) for d in DIRECTIONS
           if borders_mm.get(d) is not None and abs(borders_mm[d]) > tolerance_mm]
    if not off:
        return [f"every border within {tolerance_mm:g} mm of the reference"]
    off.sort(key=lambda item: (-abs(item[1]), DIRECTIONS.index(item[0])))
    return [border_sentence(d, v, laterality) for d, v in off]
