"""Structures a site adds to the catalogue (a site configuration's ``"add"`` list), and the same
definitions carried by a model trained with them (its manifest's ``"structures"``).

One definition (JSON)::

    {"name": "Pituitary", "label": 35, "aliases": ["Hypofyse", "Hypophysis"], "tg263": "Pituitary",
     "type": {"scheme": "SCT", "code": "56329008", "meaning": "Pituitary gland"},
     "laterality": "", "color": "#c800c8", "tolerance_mm": 1.5, "roi_type": "ORGAN",
     "group": "Added by the site", "guideline": "The gland in the sella turcica, ..."}

Required: ``name`` and ``type`` (the SNOMED CT code that the RTSTRUCT's RT ROI Identification Code
and the Slicer terminology carry). ``label`` defaults to the next free number after the
catalogue's highest; ``category`` defaults to SCT 91723000 "Anatomical structure"; ``laterality``
L or R adds the SNOMED CT laterality modifier. The (type, laterality) pair must be new to the
catalogue, as every structure's is.
"""

from __future__ import annotations

import dataclasses

from ..errors import DKOARError
from .catalogue import Catalogue, Code, Structure

ANATOMICAL_STRUCTURE = Code("SCT", "91723000", "Anatomical structure")
SIDES = {"L": Code("SCT", "7771000", "Left"), "R": Code("SCT", "24028007", "Right")}
KEYS = {"name", "label", "aliases", "tg263", "type", "category", "laterality", "color", "colour", "tolerance_mm",
        "roi_type", "group", "guideline"}


def _code(value, where: str, what: str) -> Code:
    if not isinstance(value, dict) or not all(str(value.get(k, "")).strip() for k in ("scheme", "code", "meaning")):
        raise DKOARError(f"{where}: {what} must be {{\"scheme\": \"SCT\", \"code\": \"...\", \"meaning\": \"...\"}}")
    return Code(str(value["scheme"]).strip(), str(value["code"]).strip(), str(value["meaning"]).strip())


def added_structure(item: dict, label: int, where: str) -> Structure:
    """A Structure from one definition (``label`` when the definition gives none)."""
    from .site_config import _colour, _name, _roi_type

    if not isinstance(item, dict):
        raise DKOARError(f"{where}: an added structure is an object with at least name and type")
    unknown = set(item) - KEYS
    if unknown:
        raise DKOARError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name = _name(item.get("name"), where)
    if name is None:
        raise DKOARError(f"{where}: an added structure needs a name")
    side = str(item.get("laterality") or "").strip().upper()
    if side not in ("", "L", "R"):
        raise DKOARError(f"{where}: laterality must be L, R or empty, not {item.get('laterality')!r}")
    try:
        label = int(item.get("label", label))
        tolerance = float(item.get("tolerance_mm", 2.0))
    except (TypeError, ValueError):
        raise DKOARError(f"{where}: label must be a whole number and tolerance_mm a number") from None
    if not 1 <= label <= 255:
        raise DKOARError(f"{where}: label {label} is outside 1-255 (label maps are 8-bit)")
    if not tolerance > 0:
        raise DKOARError(f"{where}: tolerance_mm must be above 0")
    aliases = item.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DKOARError(f"{where}: aliases must be a list of names")
    return Structure(
        label=label, name=name, aliases=tuple(a.strip() for a in aliases if a.strip()),
        tg263=str(item.get("tg263") or "").strip(), laterality=side,
        category=_code(item["category"], where, "category") if "category" in item else ANATOMICAL_STRUCTURE,
        type=_code(item.get("type"), where, "type"), modifier=SIDES.get(side),
        rgb=_colour(item.get("color", item.get("colour")), where) or (200, 0, 200),
        rt_roi_type=_roi_type(item.get("roi_type"), where) or "ORGAN", tolerance_mm=tolerance,
        group=str(item.get("group") or "Added by the site").strip(), core=False)


def structure_definition(structure: Structure, guideline: str = "") -> dict:
    """The JSON definition of a structure (what a dataset and a model's manifest carry)."""
    item = {"name": structure.name, "label": structure.label, "aliases": list(structure.aliases),
            "tg263": structure.tg263, "laterality": structure.laterality,
            "type": {"scheme": structure.type.scheme, "code": structure.type.value, "meaning": structure.type.meaning},
            "category": {"scheme": structure.category.scheme, "code": structure.category.value,
                         "meaning": structure.category.meaning},
            "color": "#{:02x}{:02x}{:02x}".format(*structure.rgb), "tolerance_mm": structure.tolerance_mm,
            "roi_type": structure.rt_roi_type, "group": structure.group}
    if guideline:
        item["guideline"] = guideline
    return item


def add_structures(catalogue: Catalogue, items, source: str, renumber: bool = False
                   ) -> tuple[list[Structure], dict[str, str]]:
    """The structures ``items`` define, checked against ``catalogue`` (labels, names and identities
    new), and their guideline texts by name. ``renumber``: a label already taken moves to the next
    free one (a model's structures meet a site's catalogue: the name, not the number, is the identity)."""
    if not isinstance(items, list):
        raise DKOARError(f"{source}: \"add\" must be a list of structure definitions")
    taken = {s.label for s in catalogue}
    excluded = getattr(catalogue, "excluded", None)
    taken |= {s.label for s in excluded} if excluded is not None else set()
    identities = {s.identity for s in catalogue}
    added, guidelines = [], {}
    for n, item in enumerate(items):
        where = f"{source} added structure {n + 1}"
        structure = added_structure(item, max(taken) + 1 if taken else 1, where)
        if structure.label in taken:
            if not renumber:
                raise DKOARError(f"{where}: label {structure.label} is already {_owner(catalogue, structure.label)}")
            structure = dataclasses.replace(structure, label=max(taken) + 1)
        if structure.identity in identities:
            raise DKOARError(f"{where}: {structure.name} has the codes of a structure the catalogue already holds")
        taken.add(structure.label)
        identities.add(structure.identity)
        added.append(structure)
        if isinstance(item, dict) and str(item.get("guideline") or "").strip():
            guidelines[structure.name] = str(item["guideline"]).strip()
    return added, guidelines


def _owner(catalogue: Catalogue, label: int) -> str:
    found = catalogue.find_label(label)
    return f"{found.name}'s" if found is not None else "taken"


def with_model_structures(catalogue: Catalogue, definitions) -> Catalogue:
    """``catalogue`` plus the structures a model was trained with that it lacks (a model's
    manifest ``"structures"``), so that the model's output names and codes them wherever it runs.
    A structure the catalogue already holds or left out (by name or alias) keeps the site's version."""
    from .site_config import SiteCatalogue

    excluded = getattr(catalogue, "excluded", None)
    missing = [d for d in definitions or [] if isinstance(d, dict) and catalogue.find(str(d.get("name", ""))) is None
               and (excluded is None or excluded.find(str(d.get("name", ""))) is None)]
    if not missing:
        return catalogue
    added, guidelines = add_structures(catalogue, missing, "the model's manifest", renumber=True)
    return SiteCatalogue(list(catalogue) + added, list(excluded) if excluded is not None else (),
                         {**getattr(catalogue, "guidelines", {}), **guidelines})
