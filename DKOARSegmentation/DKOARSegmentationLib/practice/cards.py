"""Guideline cards: per structure, its six borders and the anatomy that sets each, the common
pitfalls, a typical volume range with its source, and the surface tolerance of the scores.

The text is data beside the catalogue (``Resources/guidelines/*.json``), written for this project
from the 2015 international consensus guideline for head-and-neck organs at risk (Brouwer et al.,
which DAHANCA co-authored) and the DAHANCA guidelines; each card names its sources. One file may
serve several structures (both sides of a paired organ share their anatomy; borders are named
lateral and medial, not left and right). ``sources.json`` holds the full citations by key.

A site adds or overrides text with a folder of its own files in the same form (``site_folder``,
or the folder named by the environment variable DKOAR_SITE_GUIDELINES): a site file names its
structures and gives only what it changes; borders are replaced one by one, other fields whole;
``site_note`` adds the site's own remark. A structure a site added to its catalogue needs a full
card there. The tolerance is the catalogue's (what the scores use), never the card's.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DKOARError
from ..resources import resources_dir
from ..structures.catalogue import Catalogue, default_catalogue

ENV_SITE_GUIDELINES = "DKOAR_SITE_GUIDELINES"
BORDERS = ("cranial", "caudal", "anterior", "posterior", "lateral", "medial")
_FIELDS = {"structures", "title", "summary", "borders", "pitfalls", "volume_ml", "adult_reference",
           "tolerance_source", "sources", "site_note"}
_REQUIRED = ("title", "summary", "borders", "pitfalls", "volume_ml", "tolerance_source", "sources")


@dataclass(frozen=True)
class VolumeRange:
    low_ml: float
    high_ml: float
    source: str  # the full citation or description of where the range comes from


@dataclass(frozen=True)
class GuidelineCard:
    structure: str
    title: str
    summary: str
    borders: dict[str, str | None]  # cranial ... medial; medial None for a midline structure
    pitfalls: tuple[str, ...]
    volume: VolumeRange
    tolerance_mm: float
    tolerance_source: str
    sources: tuple[str, ...]  # full citations
    adult_reference: str = ""
    site_note: str = ""
    files: tuple[str, ...] = field(default=())  # where the text came from

    def as_dict(self) -> dict:
        return {"structure": self.structure, "title": self.title, "summary": self.summary,
                "borders": dict(self.borders), "pitfalls": list(self.pitfalls),
                "volume_ml": {"low": self.volume.low_ml, "high": self.volume.high_ml, "source": self.volume.source},
                "adult_reference": self.adult_reference, "tolerance_mm": self.tolerance_mm,
                "tolerance_source": self.tolerance_source, "sources": list(self.sources), "site_note": self.site_note}

    def border_lines(self) -> list[tuple[str, str]]:
        return [(name, text if text else "none: a midline structure") for name, text in self.borders.items()]

    def text(self) -> str:
        """The card as plain text (the command line)."""
        lines = [f"{self.structure}: {self.title}", self.summary, "", "Borders:"]
        lines += [f"  {name:<9} {text}" for name, text in self.border_lines()]
        lines += ["", "Pitfalls:"] + [f"  - {p}" for p in self.pitfalls]
        lines += ["", f"Typical volume: {self.volume.low_ml:g}-{self.volume.high_ml:g} ml ({self.volume.source})"]
        if self.adult_reference:
            lines.append(f"Adult reference: {self.adult_reference}")
        lines.append(f"Surface tolerance: {self.tolerance_mm:g} mm ({self.tolerance_source})")
        if self.site_note:
            lines += ["", f"Site note: {self.site_note}"]
        lines += ["", "Sources:"] + [f"  {s}" for s in self.sources]
        return "\n".join(lines)

    def html(self) -> str:
        """The card as simple HTML (Qt's rich text subset; the browser station)."""
        e = html.escape
        rows = "".join(f"<tr><td><b>{e(n)}</b></td><td>{e(t)}</td></tr>" for n, t in self.border_lines())
        parts = [f"<h3>{e(self.structure)}: {e(self.title)}</h3><p>{e(self.summary)}</p>",
                 f"<table cellspacing='0' cellpadding='3'>{rows}</table>",
                 "<p><b>Pitfalls</b></p><ul>" + "".join(f"<li>{e(p)}</li>" for p in self.pitfalls) + "</ul>",
                 f"<p><b>Typical volume</b> {self.volume.low_ml:g}-{self.volume.high_ml:g} ml "
                 f"<small>({e(self.volume.source)})</small>"]
        if self.adult_reference:
            parts.append(f"<br><b>Adult reference</b> {e(self.adult_reference)}")
        parts.append(f"<br><b>Surface tolerance</b> {self.tolerance_mm:g} mm "
                     f"<small>({e(self.tolerance_source)})</small></p>")
        if self.site_note:
            parts.append(f"<p><b>Site note</b> {e(self.site_note)}</p>")
        parts.append("<p><small>" + "<br>".join(e(s) for s in self.sources) + "</small></p>")
        return "".join(parts)


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DKOARError(f"{path}: cannot read the guideline card ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise DKOARError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise DKOARError(f"{path}: expected a JSON object")
    return document


def _card_files(folder: Path) -> tuple[dict[str, str], list[tuple[Path, dict]]]:
    """(sources by key, [(file, entry)]) of a guidelines folder."""
    if not folder.is_dir():
        raise DKOARError(f"{folder}: no such guidelines folder")
    sources_path = folder / "sources.json"
    sources = _read_json(sources_path) if sources_path.is_file() else {}
    entries = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "sources.json":
            continue
        entry = _read_json(path)
        unknown = set(entry) - _FIELDS
        if unknown:
            raise DKOARError(f"{path}: unknown fields {', '.join(sorted(unknown))} "
                             f"(allowed: {', '.join(sorted(_FIELDS))})")
        if not isinstance(entry.get("structures"), list) or not entry["structures"]:
            raise DKOARError(f'{path}: "structures" must list the structures the card is for')
        entries.append((path, entry))
    return {str(k): str(v) for k, v in sources.items()}, entries


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if key == "borders" and isinstance(value, dict):
            merged["borders"] = {**base.get("borders", {}), **value}
        elif key != "structures":
            merged[key] = value
    return merged


def _card(name: str, entry: dict, files: list[str], sources: dict[str, str], catalogue: Catalogue) -> GuidelineCard:
    where = " + ".join(files)
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise DKOARError(f"{where}: the card of {name} lacks {', '.join(missing)}")
    structure = catalogue.by_name(name)
    borders = entry["borders"]
    if not isinstance(borders, dict) or set(borders) - set(BORDERS):
        raise DKOARError(f"{where}: borders must be an object with the keys {', '.join(BORDERS)}")
    needed = BORDERS if structure.laterality else BORDERS[:5]
    absent = [b for b in needed if not borders.get(b)]
    if absent:
        raise DKOARError(f"{where}: the card of {name} lacks the borders {', '.join(absent)}")
    volume = entry["volume_ml"]
    try:
        low, high = float(volume["low"]), float(volume["high"])
        if not 0 < low <= high:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise DKOARError(f'{where}: volume_ml must be {{"low": ml, "high": ml, "source": key or text}}, '
                         'low <= high') from None

    def cite(key: str) -> str:
        return sources.get(key, key)

    reference = entry.get("adult_reference") or {}
    adult = f"{reference.get('text', '')} ({cite(reference['source'])})" if reference.get("source") else \
        str(reference.get("text", ""))
    return GuidelineCard(
        structure=structure.name, title=str(entry["title"]), summary=str(entry["summary"]),
        borders={b: (str(borders[b]) if borders.get(b) else None) for b in BORDERS},
        pitfalls=tuple(str(p) for p in entry["pitfalls"]),
        volume=VolumeRange(low, high, cite(str(volume.get("source", "")))),
        tolerance_mm=structure.tolerance_mm, tolerance_source=cite(str(entry["tolerance_source"])),
        sources=tuple(cite(str(s)) for s in entry["sources"]), adult_reference=adult,
        site_note=str(entry.get("site_note", "")), files=tuple(files))


def load_cards(site_folder: Path | str | None = None, catalogue: Catalogue | None = None
               ) -> dict[str, GuidelineCard]:
    """Structure name -> its card, in catalogue order, with the site's text over the project's.
    ``site_folder`` None: the folder named by DKOAR_SITE_GUIDELINES, if any."""
    catalogue = catalogue or default_catalogue()
    if site_folder is None and os.environ.get(ENV_SITE_GUIDELINES, "").strip():
        site_folder = os.environ[ENV_SITE_GUIDELINES].strip()
    sources, entries = _card_files(resources_dir() / "guidelines")
    groups = [entries]
    if site_folder:
        site_sources, site_entries = _card_files(Path(site_folder))
        sources.update(site_sources)
        groups.append(site_entries)
    merged: dict[str, tuple[dict, list[str]]] = {}
    for group in groups:
        for path, entry in group:
            for name in entry["structures"]:
                structure = catalogue.find(str(name))
                if structure is None:
                    raise DKOARError(f"{path}: {name!r} is not a structure of the catalogue")
                base, files = merged.get(structure.name, ({}, []))
                merged[structure.name] = (_merge(base, entry), files + [str(path)])
    return {s.name: _card(s.name, *merged[s.name], sources, catalogue) for s in catalogue if s.name in merged}


def guideline_card(name: str, site_folder: Path | str | None = None, catalogue: Catalogue | None = None
                   ) -> GuidelineCard:
    """The card of one structure (name or alias)."""
    catalogue = catalogue or default_catalogue()
    structure = catalogue.by_name(name)
    cards = load_cards(site_folder, catalogue)
    if structure.name not in cards:
        raise DKOARError(f"no guideline card for {structure.name}; add one to the site's guidelines folder")
    return cards[structure.name]
