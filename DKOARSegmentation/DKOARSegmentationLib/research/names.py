"""ROI names as planning systems and clinics write them, mapped to catalogue structures.

Each planning system and each clinic names structures its own way: ``Parotid_L``, ``L Parotid``,
``PAROTID_LT``, ``Parotis_sin``, ``parotis-v``, ``Glnd_Submand_R``, ``BrainStem``, ``Hjernestamme``.
A name is cut into words (separators, camel case; Danish letters folded: ae, oe, aa; case ignored);
a side word at its start or end (L, Lt, Left, Sin, V, Ve, Venstre; R, Rt, Right, Dx, H, Hoe, Hoejre)
gives the side, and the other words, joined, must equal the words of a catalogue name, alias or
TG-263 name, or of a spelling in ``Resources/roi_spellings.csv`` (Danish, Latin and English
clinical names). Nothing looser: ``SpinalCord_PRV5``, ``Parotid_L_old`` or ``z_Brainstem`` map to
nothing and are listed as unmapped, with their counts, for the site's mapping file.

A site's mapping file (``--map names.csv``) comes first: a CSV with the columns ``roi_name`` and
``structure`` (a catalogue name or alias; empty or ``-`` marks a name the site knows is no catalogue
structure, such as BODY or PTV, listed as ignored rather than unmapped). Its ROI names are matched
with the same folding, so one row covers every spelling that differs only in case or separators.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import DKOARError
from ..resources import resources_dir
from ..structures.catalogue import Catalogue, Structure

LEFT_WORDS = frozenset({"l", "lt", "left", "sin", "sinister", "sinistra", "v", "ve", "venstre"})
RIGHT_WORDS = frozenset({"r", "rt", "right", "dx", "dex", "dext", "dexter", "dextra", "h", "hoe", "hoejre"})
_FOLD = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "AE", "Ø": "OE", "Å": "AA", "ß": "ss"})
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
IGNORED = "-"  # a site mapping's mark for a name that is deliberately no catalogue structure


def words(name: str) -> list[str]:
    """The words of a ROI name: Danish letters folded, accents dropped, split at separators and camel case."""
    text = unicodedata.normalize("NFKD", str(name).translate(_FOLD))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _CAMEL.sub(" ", text)
    return [w for w in re.split(r"[^A-Za-z0-9]+", text.lower()) if w]


def side_and_stem(name: str) -> tuple[str, str]:
    """(side "L", "R" or "", the remaining words joined) of a ROI name; a side word counts only at
    the start or the end, so that a word inside a name is never taken for a side."""
    parts = words(name)
    side = ""
    if len(parts) > 1:
        for index in (-1, 0):
            word = parts[index]
            if word in LEFT_WORDS or word in RIGHT_WORDS:
                side = "L" if word in LEFT_WORDS else "R"
                del parts[index]
                break
    return side, "".join(parts)


def folded(name: str) -> str:
    """A ROI name folded for exact look-up (case, separators and Danish letters ignored)."""
    return "".join(words(name))


@dataclass(frozen=True)
class Mapping:
    """What a ROI name maps to: a structure, a site's deliberate "not a structure", or nothing."""

    structure: Structure | None
    how: str  # "site", "catalogue", "spelling", "ignored", "unmapped"


def _read_csv_rows(path: Path, what: str) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DKOARError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


class NameMapper:
    """Maps ROI names to the structures of ``catalogue`` (see the module docstring)."""

    def __init__(self, catalogue: Catalogue, site_map: Path | str | None = None,
                 spellings: Path | str | None = None):
        self.catalogue = catalogue
        self._index: dict[tuple[str, str], tuple[Structure, str]] = {}
        for s in catalogue:
            for spelling in (s.name, s.tg263, *s.aliases):
                if spelling:
                    self._add(spelling, s, "catalogue")
        path = Path(spellings) if spellings else resources_dir() / "roi_spellings.csv"
        for n, row in enumerate(_read_csv_rows(path, "ROI spellings table")):
            self._add_spelling(row.get("spelling", ""), row.get("structure", ""), f"{path} row {n + 1}")
        self._site: dict[str, Structure | None] = {}
        self.site_map = Path(site_map) if site_map else None
        if self.site_map is not None:
            self._read_site_map(self.site_map)

    def _add(self, spelling: str, structure: Structure, how: str) -> None:
        side, stem = side_and_stem(spelling)
        if side and side != structure.laterality:
            return  # e.g. a left structure's alias naming the right side would be a catalogue error
        key = (stem, structure.laterality)
        found = self._index.get(key)
        if found is not None and found[0].label != structure.label:
            raise DKOARError(f"the ROI spelling {spelling!r} names both {found[0].name} and {structure.name}")
        self._index.setdefault(key, (structure, how))

    def _add_spelling(self, spelling: str, target: str, where: str) -> None:
        target = target.strip()
        structure = self.catalogue.find(target) if target else None
        if structure is not None:
            self._add(spelling, structure, "spelling")
            return
        pair = [self.catalogue.find(f"{target}_{side}") for side in ("L", "R")]
        if target and all(p is not None for p in pair):
            stem = side_and_stem(spelling)[1]
            for s in pair:
                self._index.setdefault((stem, s.laterality), (s, "spelling"))
        # a spelling of a structure this catalogue does not hold (a site left it out) is skipped

    def _read_site_map(self, path: Path) -> None:
        rows = _read_csv_rows(path, "ROI name mapping")
        if rows and ("roi_name" not in rows[0] or "structure" not in rows[0]):
            raise DKOARError(f"{path}: a ROI name mapping is a CSV with the columns roi_name,structure")
        for n, row in enumerate(rows):
            name, target = (row.get("roi_name") or "").strip(), (row.get("structure") or "").strip()
            if not name:
                raise DKOARError(f"{path} row {n + 2}: an empty roi_name")
            if target in ("", IGNORED):
                self._site[folded(name)] = None
                continue
            structure = self.catalogue.find(target)
            if structure is None:
                raise DKOARError(f"{path} row {n + 2}: {target!r} is not a structure of the catalogue "
                                 "(leave it empty or write - for a name that is no catalogue structure)")
            self._site[folded(name)] = structure

    def map(self, roi_name: str) -> Mapping:
        key = folded(roi_name)
        if key in self._site:
            structure = self._site[key]
            return Mapping(structure, "site" if structure is not None else "ignored")
        side, stem = side_and_stem(roi_name)
        found = self._index.get((stem, side))
        if found is None and side:
            # a side word that is part of the name itself (no paired structure of that stem)
            found = self._index.get((folded(roi_name), ""))
        if found is None:
            return Mapping(None, "unmapped")
        return Mapping(found[0], found[1])
