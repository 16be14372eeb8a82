"""A catalogue structure's codes as a segment's terminology entry, and back.

Slicer stores a segment's terminology as one tag string,
``context~category~type~typeModifier~regionContext~region~regionModifier``, each coded concept
written ``scheme^value^meaning``. The string is made and parsed by the terminologies logic's static
(de)serialisers, which need no loaded terminology file, so this works in slicer-core too.
"""

from __future__ import annotations

from dataclasses import dataclass

import slicer

from DKOARSegmentationLib.output.label_maps import terminology as core_terminology
from DKOARSegmentationLib.structures.catalogue import Code, Structure


@dataclass(frozen=True)
class SegmentCodes:
    """What a segment's terminology says: category, type and type modifier (None when absent)."""

    context: str
    category: Code | None
    type: Code | None
    modifier: Code | None


def terminology_entry_string(structure: Structure) -> str:
    """The serialised terminology entry of ``structure`` (the same context name as the core's .seg.nrrd)."""
    entry = core_terminology(structure)
    category, type_ = structure.category, structure.type
    modifier = structure.modifier or Code("", "", "")
    # Static and Qt-free (vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry, Slicer >= 4.8):
    # argument order is value, scheme, meaning for each concept.
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        entry["contextName"],
        category.value, category.scheme, category.meaning,
        type_.value, type_.scheme, type_.meaning,
        modifier.value, modifier.scheme, modifier.meaning,
        "", "", "", "", "", "", "",
    )


def set_segment_terminology(segment, structure: Structure) -> None:
    """Give a vtkSegment the category, type and laterality modifier of ``structure``."""
    text = terminology_entry_string(structure)
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(text)  # vtkSegment::SetTerminology: Slicer >= 5.10
    else:  # Slicer <= 5.8: the same tag, set by hand (GetTerminologyEntryTagName: Slicer >= 4.8)
        segment.SetTag(segment.GetTerminologyEntryTagName(), text)


def _code(concept) -> Code | None:
    if concept is None or not concept.GetCodeValue():
        return None
    return Code(concept.GetCodingSchemeDesignator() or "", concept.GetCodeValue(), concept.GetCodeMeaning() or "")


def segment_codes(segment) -> SegmentCodes | None:
    """The codes a vtkSegment carries, or None when its terminology tag is missing or unreadable."""
    import vtk

    text = vtk.reference("")
    if not segment.GetTag(segment.GetTerminologyEntryTagName(), text) or not str(text):
        return None
    entry = slicer.vtkSlicerTerminologyEntry()
    if not slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(str(text), entry):
        return None
    return SegmentCodes(
        context=entry.GetTerminologyContextName() or "",
        category=_code(entry.GetCategoryObject()),
        type=_code(entry.GetTypeObject()),
        modifier=_code(entry.GetTypeModifierObject()),
    )
