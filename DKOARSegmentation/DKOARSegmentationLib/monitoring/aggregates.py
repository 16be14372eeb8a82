"""The numbers of the national monitoring report, from one or more correction logs.

Logs of several sites merge: finished cases are pooled, a case present in two logs (the same
``case_uid``, e.g. a log copied twice) counts once. Nothing that identifies a patient is read:
the pseudonyms stay in the logs, the report sees sites, models, months, CT properties and the
per-structure results only.

Definitions:

- edit rate of a structure: the fraction of its cases in which it was not accepted unchanged;
- active correction time: seconds of editing without idle pauses, as the log recorded them;
- time saved per case: the manual baseline (``MANUAL_BASELINE_MIN``, about 2 hours for the 32
  structures drawn by hand) minus the case's total active correction time, for cases with times;
- control chart of a structure: the monthly mean of a metric (surface Dice by default), with a
  centre line and limits from the baseline period (the first ``baseline_months`` months of data):
  centre = mean of the baseline cases, limits = centre +- 3 SD / sqrt(n), SD of the baseline cases
  and n the month's number of cases (the limits of a mean of n cases); months outside are flagged.

Undefined values (no times recorded; HD95 and MSD of a structure missing on one side) are left out
of medians and means; ``n`` counts the structure's results.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DKOARError
from ..structures.catalogue import Catalogue, default_catalogue
from .correction_log import read_only_copy
from .log_integrity import log_error, number

MANUAL_BASELINE_MIN = 120.0
RESULT_METRICS = ("active_s", "wall_s", "edits", "unchanged", "dice", "hd95_mm", "msd_mm", "surface_dice", "apl_mm")
CHART_METRICS = ("surface_dice", "dice", "hd95_mm", "msd_mm", "apl_mm", "active_s")


@dataclass
class MonitoringData:
    """Finished cases and their per-structure results, as columns."""

    logs: list[str]
    # per case
    case_site: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    case_model: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    case_month: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    case_scanner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    case_kernel: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    case_slice_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    case_contrast: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    # per structure result
    row_case: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    row_structure: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    structures: list[str] = field(default_factory=list)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    guidance: dict[str, np.ndarray] = field(default_factory=dict)  # per result row: guidance_aggregates
    duplicates: int = 0

    @property
    def n_cases(self) -> int:
        return len(self.case_site)


def _text(value) -> str:
    return "" if value is None else str(value)


def load_logs(paths: list[Path | str], catalogue: Catalogue | None = None) -> MonitoringData:
    """Read the finished cases of every log (read-only; old schemas are upgraded in memory)."""
    catalogue = catalogue or default_catalogue()
    if not paths:
        raise DKOARError("give at least one correction log (--log)")
    from .guidance_aggregates import guidance_columns, guidance_of_cases

    seen: set[str] = set()
    cases: list[tuple] = []
    rows: list[tuple] = []
    guided: dict = {}
    duplicates = 0
    for path in paths:
        connection = read_only_copy(path)
        try:
            index_of: dict[int, int] = {}
            for case_id, uid, site, name, version, started, scanner, kernel, thickness, contrast in connection.execute(
                    "SELECT case_id, case_uid, site, model_name, model_version, started_at, scanner_model, "
                    "convolution_kernel, slice_thickness_mm, contrast FROM cases WHERE finished_at IS NOT NULL "
                    "ORDER BY case_id"):
                if uid in seen:
                    duplicates += 1
                    continue
                seen.add(uid)
                index_of[case_id] = len(cases)
                model = " ".join(v for v in (_text(name), _text(version)) if v) or "unknown model"
                cases.append((_text(site) or "unknown site", model, _text(started)[:7], _text(scanner) or "unknown",
                              _text(kernel) or "unknown", number(path, thickness, f"case {case_id} slice_thickness_mm"),
                              "unknown" if contrast is None else ("with contrast" if contrast else "without contrast")))
            columns = ", ".join(RESULT_METRICS)
            for row in connection.execute(f"SELECT case_id, structure, {columns} FROM structure_results"):
                position = index_of.get(row[0])
                if position is not None:
                    rows.append((position, str(row[1]), *(number(path, v, f"case {row[0]} {row[1]} {m}")
                                                          for m, v in zip(RESULT_METRICS, row[2:]))))
            guided.update(guidance_of_cases(connection, index_of))
        except sqlite3.DatabaseError as exc:
            raise log_error(Path(path), exc) from None
        finally:
            connection.close()
    data = MonitoringData(logs=[str(p) for p in paths], duplicates=duplicates)
    if cases:
        site, model, month, scanner, kernel, thickness, contrast = zip(*cases)
        data.case_site = np.array(site, dtype=object)
        data.case_model = np.array(model, dtype=object)
        data.case_month = np.array(month, dtype=object)
        data.case_scanner = np.array(scanner, dtype=object)
        data.case_kernel = np.array(kernel, dtype=object)
        data.case_slice_mm = np.array(thickness, dtype=float)
        data.case_contrast = np.array(contrast, dtype=object)
    if rows:
        columns = list(zip(*rows))
        data.row_case = np.array(columns[0], dtype=np.int64)
        names = np.array(columns[1], dtype=object)
        unique = sorted(set(names.tolist()), key=lambda n: (catalogue.find(n).label if catalogue.find(n) else 10_000, n))
        data.structures = unique
        lookup = {name: i for i, name in enumerate(unique)}
        data.row_structure = np.array([lookup[n] for n in names.tolist()], dtype=np.int64)
        for offset, metric in enumerate(RESULT_METRICS):
            raw = columns[2 + offset]
            data.values[metric] = np.array(raw, dtype=float)
        data.guidance = guidance_columns(data.row_case, list(columns[1]), guided)
    else:
        for metric in RESULT_METRICS:
            data.values[metric] = np.zeros(0)
    return data


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _median(values: np.ndarray) -> float | None:
    v = _finite(values)
    return float(np.median(v)) if len(v) else None


def _mean(values: np.ndarray) -> float | None:
    v = _finite(values)
    return float(np.mean(v)) if len(v) else None


def summarise_rows(values: dict[str, np.ndarray], index: np.ndarray) -> dict:
    """Aggregates of the result rows at ``index``."""
    unchanged = _finite(values["unchanged"][index])
    return {
        "n": int(len(index)),
        "edit_rate": float(np.mean(unchanged == 0)) if len(unchanged) else None,
        "active_s_median": _median(values["active_s"][index]),
        "active_s_mean": _mean(values["active_s"][index]),
        "edits_mean": _mean(values["edits"][index]),
        "apl_mm_median": _median(values["apl_mm"][index]),
        "apl_mm_mean": _mean(values["apl_mm"][index]),
        "surface_dice_median": _median(values["surface_dice"][index]),
        "surface_dice_mean": _mean(values["surface_dice"][index]),
        "dice_median": _median(values["dice"][index]),
        "hd95_mm_median": _median(values["hd95_mm"][index]),
    }


def grouped(keys: np.ndarray, n_keys: int) -> list[np.ndarray]:
    """Row indices of each key value 0..n_keys-1 (one sort for all)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n_keys + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n_keys)]


def case_totals(data: MonitoringData) -> dict[str, np.ndarray]:
    """Per case: total active seconds (NaN without times), structures edited, total APL."""
    n = data.n_cases
    active = np.zeros(n)
    timed = np.zeros(n, dtype=bool)
    a = data.values["active_s"]
    ok = np.isfinite(a)
    np.add.at(active, data.row_case[ok], a[ok])
    timed[data.row_case[ok]] = True
    active[~timed] = np.nan
    edited = np.zeros(n)
    u = data.values["unchanged"]
    np.add.at(edited, data.row_case[u == 0], 1)
    apl = np.zeros(n)
    p = data.values["apl_mm"]
    okp = np.isfinite(p)
    np.add.at(apl, data.row_case[okp], p[okp])
    return {"active_s": active, "edited": edited, "apl_mm": apl}


def time_saved(data: MonitoringData, baseline_min: float = MANUAL_BASELINE_MIN) -> dict:
    totals = case_totals(data)["active_s"]
    timed = _finite(totals) / 60.0
    if not len(timed):
        return {"cases_timed": 0, "baseline_min": baseline_min}
    saved = baseline_min - timed
    return {
        "cases_timed": int(len(timed)),
        "baseline_min": baseline_min,
        "active_min_median": float(np.median(timed)),
        "active_min_mean": float(np.mean(timed)),
        "saved_min_median": float(np.median(saved)),
        "saved_min_mean": float(np.mean(saved)),
        "saved_hours_total": float(np.sum(saved) / 60.0),
    }


@dataclass
class ControlChart:
    structure: str
    months: list[str]
    means: np.ndarray
    counts: np.ndarray
    centre: float | None
    lower: np.ndarray
    upper: np.ndarray
    baseline_months: list[str]
    flagged: np.ndarray  # bool per month


def control_charts(data: MonitoringData, metric: str = "surface_dice", baseline_months: int = 3) -> list[ControlChart]:
    """Monthly control charts of ``metric`` per structure (see the module docstring)."""
    if metric not in CHART_METRICS:
        raise DKOARError(f"no control chart for {metric!r}; choose one of {', '.join(CHART_METRICS)}")
    months = sorted(set(data.case_month.tolist()))
    month_index = {m: i for i, m in enumerate(months)}
    row_month = np.array([month_index[m] for m in data.case_month.tolist()], dtype=np.int64)[data.row_case] \
        if data.n_cases else np.zeros(0, dtype=np.int64)
    base = set(months[:baseline_months])
    values = data.values[metric]
    charts = []
    n_months = len(months)
    for s_index, rows in enumerate(grouped(data.row_structure, len(data.structures))):
        v = values[rows]
        m = row_month[rows]
        ok = np.isfinite(v)
        v, m = v[ok], m[ok]
        counts = np.bincount(m, minlength=n_months).astype(float)
        sums = np.bincount(m, weights=v, minlength=n_months)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        in_base = np.isin(m, [month_index[b] for b in base])
        centre = float(np.mean(v[in_base])) if in_base.any() else None
        sd = float(np.std(v[in_base], ddof=1)) if in_base.sum() > 1 else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            half = 3.0 * sd / np.sqrt(counts)
        lower = (centre - half) if centre is not None else np.full(n_months, np.nan)
        upper = (centre + half) if centre is not None else np.full(n_months, np.nan)
        flagged = (counts > 0) & np.isfinite(means) & ((means < lower) | (means > upper)) if centre is not None \
            else np.zeros(n_months, dtype=bool)
        charts.append(ControlChart(data.structures[s_index], months, means, counts, centre, lower, upper,
                                   sorted(base), flagged))
    return charts


def breakdown(data: MonitoringData, by: str) -> list[dict]:
    """Per group of cases: cases, median active minutes per case, edit rate, metrics.

    ``by``: site, model, month, scanner (scanner / kernel), slice (thickness) or contrast."""
    if by == "scanner":
        labels = np.array([f"{s} / {k}" for s, k in zip(data.case_scanner, data.case_kernel)], dtype=object)
    elif by == "slice":
        labels = np.array(["unknown" if not np.isfinite(t) else f"{t:g} mm" for t in data.case_slice_mm], dtype=object)
    else:
        labels = {"site": data.case_site, "model": data.case_model, "month": data.case_month,
                  "contrast": data.case_contrast}[by]
    names = sorted(set(labels.tolist()))
    lookup = {n: i for i, n in enumerate(names)}
    case_group = np.array([lookup[x] for x in labels.tolist()], dtype=np.int64)
    totals = case_totals(data)
    row_group = case_group[data.row_case] if len(data.row_case) else np.zeros(0, dtype=np.int64)
    out = []
    case_groups = grouped(case_group, len(names))
    for g, rows in enumerate(grouped(row_group, len(names))):
        cases = case_groups[g]
        summary = summarise_rows(data.values, rows)
        summary.update({
            by: names[g],
            "cases": int(len(cases)),
            "active_min_per_case_median": (None if _median(totals["active_s"][cases]) is None
                                           else _median(totals["active_s"][cases]) / 60.0),
            "apl_mm_per_case_median": _median(totals["apl_mm"][cases]),
        })
        out.append(summary)
    return out


def per_structure(data: MonitoringData) -> list[dict]:
    out = []
    for s_index, rows in enumerate(grouped(data.row_structure, len(data.structures))):
        summary = summarise_rows(data.values, rows)
        summary["structure"] = data.structures[s_index]
        out.append(summary)
    return out


AGGREGATE_COLUMNS = ("grouping", "group", "structure", "n", "edit_rate", "active_s_median", "active_s_mean",
                     "edits_mean", "apl_mm_median", "apl_mm_mean", "surface_dice_median", "surface_dice_mean",
                     "dice_median", "hd95_mm_median")


def aggregate_rows(data: MonitoringData) -> list[dict]:
    """The PHI-free aggregates for pooling across sites: per structure, overall and per site,
    model and month (n and means are given so that pooled means can be formed)."""
    out = []
    groupings = {"all": np.array(["all"] * data.n_cases, dtype=object), "site": data.case_site,
                 "model": data.case_model, "month": data.case_month}
    n_structures = len(data.structures)
    for grouping, labels in groupings.items():
        names = sorted(set(labels.tolist()))
        lookup = {n: i for i, n in enumerate(names)}
        case_group = np.array([lookup[x] for x in labels.tolist()], dtype=np.int64)
        if not len(data.row_case):
            continue
        key = case_group[data.row_case] * n_structures + data.row_structure
        for k, rows in enumerate(grouped(key, len(names) * n_structures)):
            if not len(rows):
                continue
            summary = summarise_rows(data.values, rows)
            summary.update({"grouping": grouping, "group": names[k // n_structures],
                            "structure": data.structures[k % n_structures]})
            out.append(summary)
    return out


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
