"""The structure catalogue: names, aliases, colours and coded identity of the organs at risk.

The catalogue is data (``Resources/structures.csv``), so that a site can rename, recolour or
extend it without touching Python. Label values in every label map of this project are the
catalogue's ``label`` numbers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DKOARError
from ..resources import resources_dir


@dataclass(frozen=True)
class Code:
    """A coded concept (scheme designator, code value, code meaning), as in DICOM."""

    scheme: str
    value: str
    meaning: str


@dataclass(frozen=True)
class Structure:
    label: int
    name: str
    aliases: tuple[str, ...]
    tg263: str
    laterality: str  # "L", "R" or "" (midline / unpaired)
    category: Code
    type: Code
    modifier: Code | None
    rgb: tuple[int, int, int]
    rt_roi_type: str
    tolerance_mm: float
    group: str
    core: bool  # one of the national 32 (False for optional extras such as Carotid_L/R)
    # the plausibility checks': the volume range of an adult (ml, with its source), and how many
    # separate parts the structure has on a CT (the thyroid's lobes and isthmus: up to three)
    volume_range_ml: tuple[float, float] | None = None
    volume_source: str = ""
    parts: int = 1

    @property
    def identity(self) -> tuple[str, str]:
        """The (type, modifier) pair that must be unique within the catalogue."""
        return (self.type.value, self.modifier.value if self.modifier else "")


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_REQUIRED_COLUMNS = (
    "label", "name", "aliases", "tg263", "laterality", "category_scheme", "category_code",
    "category_meaning", "type_scheme", "type_code", "type_meaning", "modifier_scheme",
    "modifier_code", "modifier_meaning", "red", "green", "blue", "rt_roi_type", "tolerance_mm",
    "group", "core",
)


class Catalogue:
    """An ordered collection of structures with lookup by label, name or alias."""

    def __init__(self, structures: Iterable[Structure]):
        self.structures: tuple[Structure, ...] = tuple(structures)
        self._by_label = {s.label: s for s in self.structures}
        if len(self._by_label) != len(self.structures):
            raise DKOARError("the structure catalogue has duplicate label numbers")
        self._by_key: dict[str, Structure] = {}
        for s in self.structures:
            for key in (s.name, s.tg263, *s.aliases):
                if not key:
                    continue
                norm = _normalise(key)
                other = self._by_key.get(norm)
                if other is not None and other is not s:
                    raise DKOARError(
                        f"the structure catalogue is ambiguous: {key!r} names both "
                        f"{other.name} and {s.name}"
                    )
                self._by_key[norm] = s

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def core_structures(self) -> tuple[Structure, ...]:
        return tuple(s for s in self.structures if s.core)

    def by_label(self, label: int) -> Structure:
        try:
            return self._by_label[int(label)]
        except KeyError:
            raise DKOARError(f"label {label} is not in the structure catalogue") from None

    def find_label(self, label: int) -> Structure | None:
        return self._by_label.get(int(label))

    def find(self, name: str) -> Structure | None:
        """The structure called ``name`` or one of its aliases (case and punctuation ignored)."""
        return self._by_key.get(_normalise(name))

    def by_name(self, name: str) -> Structure:
        found = self.find(name)
        if found is None:
            raise DKOARError(f"{name!r} is not a structure of the catalogue")
        return found

    @property
    def max_label(self) -> int:
        return max(self._by_label)

    def groups(self) -> dict[str, tuple[Structure, ...]]:
        """The structures by anatomical group (the catalogue's ``group`` column), groups in the
        order they first appear; what the Slicer panel lists."""
        out: dict[str, list[Structure]] = {}
        for s in self.structures:
            out.setdefault(s.group, []).append(s)
        return {group: tuple(members) for group, members in out.items()}


def _plausibility_columns(row: dict[str, str]) -> dict:
    """The optional columns of the plausibility checks (a site's older table has none)."""
    out: dict = {"volume_source": (row.get("volume_source") or "").strip()}
    low, high = (row.get("volume_min_ml") or "").strip(), (row.get("volume_max_ml") or "").strip()
    if low and high:
        out["volume_range_ml"] = (float(low), float(high))
        if not 0 <= out["volume_range_ml"][0] < out["volume_range_ml"][1]:
            raise ValueError("volume_min_ml must be below volume_max_ml")
    if (row.get("parts") or "").strip():
        out["parts"] = int(row["parts"])
        if out["parts"] < 1:
            raise ValueError("parts must be at least 1")
    return out


def _structure_from_row(row: dict[str, str], where: str) -> Structure:
    try:
        modifier = (
            Code(row["modifier_scheme"], row["modifier_code"], row["modifier_meaning"])
            if row["modifier_code"]
            else None
        )
        laterality = row["laterality"].strip().upper()
        if laterality not in ("", "L", "R"):
            raise ValueError(f"laterality must be L, R or empty, not {laterality!r}")
        return Structure(
            label=int(row["label"]),
            name=row["name"].strip(),
            aliases=tuple(a.strip() for a in row["aliases"].split(";") if a.strip()),
            tg263=row["tg263"].strip(),
            laterality=laterality,
            category=Code(row["category_scheme"], row["category_code"], row["category_meaning"]),
            type=Code(row["type_scheme"], row["type_code"], row["type_meaning"]),
            modifier=modifier,
            rgb=(int(row["red"]), int(row["green"]), int(row["blue"])),
            rt_roi_type=row["rt_roi_type"].strip() or "ORGAN",
            tolerance_mm=float(row["tolerance_mm"]),
            group=row["group"].strip(),
            core=row["core"].strip().lower() in ("yes", "true", "1"),
            **_plausibility_columns(row),
        )
    except (KeyError, ValueError) as exc:
        raise DKOARError(f"{where}: bad structure row ({exc})") from None


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Read a catalogue table; the module's own ``structures.csv`` when no path is given."""
    path = Path(path) if path else resources_dir() / "structures.csv"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DKOARError(f"cannot read the structure catalogue {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DKOARError(f"{path}: the catalogue lacks the columns {', '.join(missing)}")
    return Catalogue(
        _structure_from_row(row, f"{path} line {n + 2}") for n, row in enumerate(reader)
    )


_DEFAULT: Catalogue | None = None


def default_catalogue() -> Catalogue:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_catalogue()
    return _DEFAULT
