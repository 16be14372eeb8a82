"""The review guidance of one result, as it travels: plausibility flags and the uncertainty
review list, into run.json, the RTSTRUCT's ROI observations and the correction log."""

from __future__ import annotations

from dataclasses import dataclass, field

from .flags import Flag, by_structure, flags_document, flags_from_json, worst_severity

OBSERVATION_LABEL_LENGTH = 16  # ROIObservationLabel is a DICOM SH


@dataclass
class ReviewGuidance:
    flags: list[Flag] = field(default_factory=list)
    review: list[dict] = field(default_factory=list)  # review.uncertainty.review_list entries
    uncertainty: dict | None = None  # review.uncertainty.uncertainty_record

    def as_record(self) -> dict:
        """run.json's ``flags``, ``review`` and ``uncertainty``."""
        return {"flags": flags_document(self.flags)["flags"], "review": list(self.review),
                "uncertainty": self.uncertainty}

    @classmethod
    def from_record(cls, record: dict) -> "ReviewGuidance":
        return cls(flags_from_json(record.get("flags"), "run.json flags"), list(record.get("review") or []),
                   record.get("uncertainty"))

    def rtstruct_observations(self) -> dict[str, tuple[str, str]]:
        """Structure name -> (ROI observation label, description): the label a planning system
        shows beside the ROI ("CHECK error"), the description every flag's sentence and the
        review rank."""
        flagged = by_structure(self.flags)
        ranks = {entry["structure"]: entry for entry in self.review}
        out = {}
        for name in sorted(set(flagged) | set(ranks)):
            flags = flagged.get(name, [])
            parts = [f"[{f.severity}] {f.kind}: {f.message}" for f in flags]
            entry = ranks.get(name)
            if entry is not None:
                parts.append(f"Review rank {entry['rank']}: the model is least sure on slices "
                             f"{entry['first_slice'] + 1}-{entry['last_slice'] + 1}.")
            severity = worst_severity(flags)
            label = f"CHECK {severity}" if severity in ("warning", "error") else "REVIEW" if entry else "NOTE"
            out[name] = (label[:OBSERVATION_LABEL_LENGTH], " ".join(parts)[:1024])
        return out


def review_guidance(segmentation, ct, slice_uncertainty=None, mapping=None) -> ReviewGuidance:
    """The flags of a result on its CT and, when the model's uncertainty was measured, the review list."""
    from ..input.orientation import relayout_for
    from .plausibility import check_segmentation
    from .uncertainty import review_list, structure_uncertainty, uncertainty_record

    guidance = ReviewGuidance(check_segmentation(segmentation, ct))
    if slice_uncertainty is not None and mapping is not None:
        slice_axis = relayout_for(ct.affine).order[0]
        per_structure = structure_uncertainty(slice_uncertainty, mapping, segmentation, slice_axis)
        guidance.review = review_list(per_structure, segmentation, slice_axis)
        guidance.uncertainty = uncertainty_record(per_structure, slice_uncertainty.method)
    return guidance
