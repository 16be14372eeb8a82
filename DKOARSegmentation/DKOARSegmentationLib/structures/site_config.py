"""A site's own structure set: rename, recolour, reorder, choose the subset, set ROI types.

Danish clinics name and colour the organs at risk as their planning system expects. A site
configuration file lists the structures the site wants, in the site's order; each entry names a
catalogue structure (by name or alias) and may give it a new name, colour and RTROIInterpretedType.
Structures not listed are left out (``keep_unlisted`` keeps them after the listed ones). A renamed
structure keeps its old name as an alias, so models still map to it; label numbers do not change.

JSON::

    {"structures": [
        {"structure": "Parotid_L", "name": "Parotis_sin", "color": "#ff8000", "roi_type": "AVOIDANCE"},
        "Brainstem",
        {"structure": "Lens_L", "include": false}],
     "keep_unlisted": false}

A JSON configuration may also add structures of the site's own (``"add"``: name, SNOMED CT codes,
colour, tolerance, guideline text; see ``added.py``) with new label numbers; they are kept whether
listed or not, and without ``"structures"`` every catalogue structure is kept beside them::

    {"add": [{"name": "Pituitary", "type": {"scheme": "SCT", "code": "56329008", "meaning": "Pituitary gland"},
              "color": "#c800c8", "tolerance_mm": 1.5, "guideline": "..."}]}

CSV (header row; every column but ``structure`` optional, an empty cell keeps the catalogue's value)::

    structure,name,color,roi_type,include
    Parotid_L,Parotis_sin,#ff8000,AVOIDANCE,yes
    Brainstem,,,,
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DKOARError
from .catalogue import Catalogue, Structure

# DICOM PS3.3 C.8.8.8.1: the defined terms of RTROIInterpretedType (empty is allowed: type 2)
RT_ROI_TYPES = ("EXTERNAL", "PTV", "CTV", "GTV", "TREATED_VOLUME", "IRRAD_VOLUME", "OAR", "BOLUS", "AVOIDANCE",
                "ORGAN", "MARKER", "REGISTRATION", "ISOCENTER", "CONTRAST_AGENT", "CAVITY", "BRACHY_CHANNEL",
                "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD", "SUPPORT", "FIXATION", "DOSE_REGION",
                "CONTROL", "DOSE_MEASUREMENT")


@dataclass(frozen=True)
class SiteEntry:
    structure: str
    name: str | None = None
    rgb: tuple[int, int, int] | None = None
    roi_type: str | None = None
    include: bool = True


@dataclass(frozen=True)
class SiteConfig:
    entries: tuple[SiteEntry, ...]
    keep_unlisted: bool = False
    source: str = ""
    added: tuple[dict, ...] = ()  # definitions of the site's own structures (added.py)


def _colour(value, where: str) -> tuple[int, int, int] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise DKOARError(f"{where}: colour {value!r} is not #rrggbb")
        try:
            return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            raise DKOARError(f"{where}: colour {value!r} is not #rrggbb") from None
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise DKOARError(f"{where}: colour {value!r} is neither #rrggbb nor [r, g, b] in 0-255")


def _roi_type(value, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    text = str(value).strip().upper()
    if text not in RT_ROI_TYPES:
        raise DKOARError(f"{where}: ROI type {value!r} is not a DICOM RTROIInterpretedType ({', '.join(RT_ROI_TYPES)})")
    return text


def _name(value, where: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if len(text) > 64 or "\\" in text:
        raise DKOARError(f"{where}: name {value!r} is not a valid ROI name (at most 64 characters, no backslash)")
    return text


def _include(value, where: str) -> bool:
    if value is None or value == "" or value is True:
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in ("yes", "y", "true", "1"):
        return True
    if text in ("no", "n", "false", "0"):
        return False
    raise DKOARError(f"{where}: include must be yes or no, not {value!r}")


def _entry(item, where: str) -> SiteEntry:
    if isinstance(item, str):
        item = {"structure": item}
    if not isinstance(item, dict) or not str(item.get("structure", "")).strip():
        raise DKOARError(f"{where}: each entry needs the catalogue structure it configures (\"structure\")")
    unknown = set(item) - {"structure", "name", "color", "colour", "roi_type", "include"}
    if unknown:
        raise DKOARError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return SiteEntry(str(item["structure"]).strip(), _name(item.get("name"), where),
                     _colour(item.get("color", item.get("colour")), where), _roi_type(item.get("roi_type"), where),
                     _include(item.get("include"), where))


def parse_site_config(text: str, fmt: str, source: str = "site configuration") -> SiteConfig:
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DKOARError(f"{source}: not valid JSON ({exc})") from None
        added = data.get("add", []) if isinstance(data, dict) else []
        if not isinstance(data, dict) or not isinstance(data.get("structures", [] if added else None), list) \
                or not isinstance(added, list):
            raise DKOARError(f"{source}: expected {{\"structures\": [...]}} and/or {{\"add\": [...]}}")
        entries = tuple(_entry(item, f"{source} entry {n + 1}") for n, item in enumerate(data.get("structures", [])))
        keep = data.get("keep_unlisted", "structures" not in data)
        if not isinstance(keep, bool):
            raise DKOARError(f"{source}: keep_unlisted must be true or false")
        return SiteConfig(entries, keep, source, tuple(added))
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if "structure" not in (reader.fieldnames or []):
            raise DKOARError(f"{source}: the CSV needs a 'structure' column (and optionally name, color, roi_type, include)")
        entries = tuple(_entry({k: v for k, v in row.items() if k and v not in (None, "")} | {"structure": row["structure"]},
                               f"{source} line {n + 2}") for n, row in enumerate(reader))
        return SiteConfig(entries, False, source)
    raise DKOARError(f"{source}: a site configuration is a .json or .csv file")


def load_site_config(path: Path | str) -> SiteConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DKOARError(f"{path}: cannot read the site configuration ({exc.strerror})") from None
    return parse_site_config(text, path.suffix.lower().lstrip("."), str(path))


class SiteCatalogue(Catalogue):
    """A catalogue restricted to a site's structures; ``excluded`` are the structures the site left
    out (a model label that maps to one is reported as excluded, not as unknown)."""

    def __init__(self, structures, excluded=(), guidelines: dict[str, str] | None = None):
        super().__init__(structures)
        self.excluded = Catalogue(excluded) if excluded else None
        self.guidelines = dict(guidelines or {})  # guideline texts of structures the site added


def apply_site_config(catalogue: Catalogue, config: SiteConfig) -> SiteCatalogue:
    from .added import add_structures

    added, guidelines = add_structures(catalogue, list(config.added), config.source) if config.added else ([], {})
    catalogue = Catalogue(list(catalogue) + added)
    chosen: list[Structure] = []
    dropped: list[Structure] = []
    seen: set[int] = set()
    for entry in config.entries:
        s = catalogue.find(entry.structure)
        if s is None:
            raise DKOARError(f"{config.source}: {entry.structure!r} is not a structure of the catalogue")
        if s.label in seen:
            raise DKOARError(f"{config.source}: {s.name} is listed twice")
        seen.add(s.label)
        changes = {}
        if entry.name is not None and entry.name != s.name:
            changes.update(name=entry.name, aliases=s.aliases + (s.name,))
        if entry.rgb is not None:
            changes["rgb"] = entry.rgb
        if entry.roi_type is not None:
            changes["rt_roi_type"] = entry.roi_type
        s = dataclasses.replace(s, **changes) if changes else s
        (chosen if entry.include else dropped).append(s)
    rest = [s for s in catalogue if s.label not in seen]
    new = {s.label for s in added}
    chosen.extend(s for s in rest if config.keep_unlisted or s.label in new)
    dropped.extend(s for s in rest if not (config.keep_unlisted or s.label in new))
    if not chosen:
        raise DKOARError(f"{config.source}: no structure is chosen")
    return SiteCatalogue(chosen, dropped, guidelines)


def parse_structure_names(text: str) -> list[str]:
    """Structure names from a comma- or semicolon-separated list (``--structures``)."""
    return [name.strip() for name in text.replace(";", ",").split(",") if name.strip()]


def choose_structures(catalogue: Catalogue, names) -> SiteCatalogue:
    """Only the structures ``names`` (names or aliases), in the catalogue's order; the others are
    left out (reported as excluded when the model provides them)."""
    chosen: set[int] = set()
    for name in names:
        s = catalogue.find(name)
        if s is None:
            raise DKOARError(f"--structures: {name!r} is not a structure of the catalogue")
        chosen.add(s.label)
    if not chosen:
        raise DKOARError("--structures: no structure is chosen")
    structures = list(catalogue)
    excluded = [s for s in structures if s.label not in chosen]
    if isinstance(catalogue, SiteCatalogue) and catalogue.excluded is not None:
        excluded = list(catalogue.excluded) + excluded
    return SiteCatalogue([s for s in structures if s.label in chosen], excluded, getattr(catalogue, "guidelines", None))
