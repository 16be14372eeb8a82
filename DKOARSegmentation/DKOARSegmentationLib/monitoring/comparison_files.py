"""A comparison written out: JSON (null for an undefined distance) and the same table as CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..atomic import atomic_path
from .comparison import METRIC_FIELDS, StructureComparison


def _rounded(value):
    if isinstance(value, bool) or value is None:
        return value
    return round(float(value), 6)


def comparison_json(results: dict[str, StructureComparison]) -> dict:
    return {"structures": {name: {k: _rounded(v) for k, v in r.as_dict().items()} for name, r in results.items()}}


def comparison_paths(out: Path | str) -> tuple[Path, Path]:
    """The JSON file and the CSV beside it (``out`` with suffix .csv, or NAME_metrics.csv)."""
    out = Path(out)
    return out, out.with_suffix(".csv") if out.suffix.lower() != ".csv" else out.with_name(out.stem + "_metrics.csv")


def write_comparison(results: dict[str, StructureComparison], out: Path | str) -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the same table as CSV beside it (``out`` with suffix .csv)."""
    out, csv_path = comparison_paths(out)
    document = comparison_json(results)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["structure", *METRIC_FIELDS])
    for name, values in document["structures"].items():
        writer.writerow([name, *("" if values[f] is None else values[f] for f in METRIC_FIELDS)])
    with atomic_path(csv_path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return out, csv_path
