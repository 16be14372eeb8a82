"""A result's review guidance on its segmentation node, for every front end: the plausibility
flags per structure (a flag icon beside the structure), the ranked review list (click to jump to
the slices), and the checks run again on the segmentation as it is now (after corrections).

The guidance comes with a run (``json_run.result_record``) and is kept on the node as JSON in the
attribute ``DKOAR.reviewGuidance`` (saved with the scene), so that the correction log can record it
when correcting starts and the panel and the station show the same.
"""

from __future__ import annotations

import json

import numpy as np
import slicer

from DKOARSegmentationLib.review.flags import Flag, by_structure, worst_severity
from DKOARSegmentationLib.review.guidance import ReviewGuidance

GUIDANCE_ATTRIBUTE = "DKOAR.reviewGuidance"
SEVERITY_ICONS = {"error": "SP_MessageBoxCritical", "warning": "SP_MessageBoxWarning",
                  "info": "SP_MessageBoxInformation"}  # Qt standard icons a front end may use


def set_guidance(segmentation_node, guidance: ReviewGuidance | dict) -> None:
    record = guidance.as_record() if isinstance(guidance, ReviewGuidance) else dict(guidance)
    segmentation_node.SetAttribute(GUIDANCE_ATTRIBUTE, json.dumps(
        {key: record.get(key) for key in ("flags", "review", "uncertainty")}))


def guidance_of(segmentation_node) -> ReviewGuidance:
    """The node's guidance (empty when it has none: a segmentation not made by a run)."""
    text = segmentation_node.GetAttribute(GUIDANCE_ATTRIBUTE) if segmentation_node is not None else None
    if not text:
        return ReviewGuidance()
    try:
        return ReviewGuidance.from_record(json.loads(text))
    except ValueError:
        return ReviewGuidance()


def structure_flags(segmentation_node) -> dict[str, dict]:
    """Structure name -> {"severity": the worst, "icon": a Qt standard icon's name, "flags": [Flag],
    "text": the flags' sentences}: what a front end shows beside each flagged structure."""
    out = {}
    for name, flags in by_structure(guidance_of(segmentation_node).flags).items():
        severity = worst_severity(flags)
        out[name] = {"severity": severity, "icon": SEVERITY_ICONS[severity], "flags": flags,
                     "text": "\n".join(f"[{f.severity}] {f.message}" for f in flags)}
    return out


def review_entries(segmentation_node) -> list[dict]:
    """The ranked review list, each entry with the RAS point to jump to (``ras``) and one line of
    text (``text``) for a list."""
    out = []
    for entry in guidance_of(segmentation_node).review:
        item = dict(entry)
        x, y, z = entry["centre_lps"]
        item["ras"] = [-float(x), -float(y), float(z)]
        item["text"] = (f"{entry['rank']}. {entry['structure']}: slices {entry['first_slice'] + 1}-"
                        f"{entry['last_slice'] + 1} (uncertain band {entry.get('band_mm', 0):.1f} mm)")
        out.append(item)
    return out


def jump_to(ras, scene=None) -> None:
    """Centre every slice view on a RAS point (the views' own orientations kept)."""
    scene = scene or slicer.mrmlScene
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, float(ras[0]), float(ras[1]), float(ras[2]),
                                          slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def check_again(segmentation_node, volume_node) -> list[Flag]:
    """The plausibility checks on the segmentation as it is now (on its CT volume node), kept on the
    node in place of the run's flags (the review list stays: it is the model's)."""
    from DKOARSegmentationLib.review.plausibility import check_segmentation
    from DKOARSegmentationLib.volume import Volume

    from .geometry import volume_node_affine_lps
    from .readback import segmentation_to_core

    segmentation = segmentation_to_core(segmentation_node, volume_node)
    ct = Volume(np.asarray(slicer.util.arrayFromVolume(volume_node)), volume_node_affine_lps(volume_node))
    flags = check_segmentation(segmentation, ct)
    guidance = guidance_of(segmentation_node)
    guidance.flags = flags
    set_guidance(segmentation_node, guidance)
    return flags
