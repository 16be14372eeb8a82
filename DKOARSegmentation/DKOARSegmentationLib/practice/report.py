"""The practice report: one self-contained HTML page from one or more practice histories.

Like the monitoring report (whose page helpers it uses) the page needs no network: styles inline,
plots as embedded PNG (matplotlib, Agg). It shows:

- learning curves: per structure, each trainee's surface Dice attempt after attempt;
- per trainee: attempts, structures, time spent, and the surface Dice of first against latest
  attempts;
- the cohort's hardest structures (lowest median surface Dice) with the border each misses most;
- the cohort's hardest borders: structure and direction by the median distance from the
  reference, with the usual sense in words ("caudal border 4.2 mm too low").

Trainees appear as the first characters of their keyed pseudonym; a trainee named with the site
key (``you_key``) appears as "you", so a page made for one trainee shows her own curve among
the cohort's without showing anybody's name.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..monitoring.report import _STYLE, _figure_tag, _table
from ..structures.catalogue import default_catalogue
from .borders import DIRECTIONS
from .feedback import border_label, border_sentence
from .history import read_history

_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
            "#eeca3b")


def trainee_label(key: str, you_key: str | None = None) -> str:
    return "you" if you_key and key == you_key else f"trainee {key[:8]}"


def _median(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.median(values)) if values else None


def _ordered_structures(rows: list[dict]) -> list[str]:
    order = {s.name: i for i, s in enumerate(default_catalogue())}
    return sorted({r["structure"] for r in rows}, key=lambda n: (order.get(n, len(order)), n))


def learning_curves(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """structure -> trainee key -> that trainee's attempts at it, oldest first, numbered from 1."""
    curves: dict[str, dict[str, list[dict]]] = {}
    for row in rows:  # rows come oldest first
        attempts = curves.setdefault(row["structure"], {}).setdefault(row["trainee_key"], [])
        attempts.append({"n": len(attempts) + 1, "surface_dice": row["surface_dice"], "dice": row["dice"],
                         "submitted_at": row["submitted_at"]})
    return curves


def border_statistics(rows: list[dict]) -> list[dict]:
    """Per (structure, direction): attempts, median |difference| and median signed difference (mm),
    and the share of attempts off by more than the tolerance; worst first."""
    out = []
    for structure in _ordered_structures(rows):
        mine = [r for r in rows if r["structure"] == structure]
        laterality = mine[0]["laterality"]
        for direction in DIRECTIONS:
            values = [(r[f"border_{direction}_mm"], r["tolerance_mm"]) for r in mine
                      if r[f"border_{direction}_mm"] is not None]
            if not values:
                continue
            signed = np.array([v for v, _ in values])
            off = np.mean([abs(v) > (t or 0.0) for v, t in values])
            median_signed = float(np.median(signed))
            label = border_label(direction, laterality)
            typically = border_sentence(direction, median_signed, laterality) if abs(median_signed) >= 0.05 else \
                f"{label} border as often beyond as short"
            out.append({"structure": structure, "border": label, "direction": direction, "n": len(values),
                        "median_abs_mm": float(np.median(np.abs(signed))), "median_mm": median_signed,
                        "off_share": float(off), "typically": typically})
    out.sort(key=lambda r: (-r["median_abs_mm"], r["structure"], DIRECTIONS.index(r["direction"])))
    return out


def hardest_structures(rows: list[dict]) -> list[dict]:
    """Per structure: attempts, trainees, median scores and the border most often off; hardest
    (lowest median surface Dice) first."""
    borders = border_statistics(rows)
    out = []
    for structure in _ordered_structures(rows):
        mine = [r for r in rows if r["structure"] == structure]
        worst = next((b for b in borders if b["structure"] == structure), None)
        out.append({"structure": structure, "n": len(mine), "trainees": len({r["trainee_key"] for r in mine}),
                    "surface_dice_median": _median(r["surface_dice"] for r in mine),
                    "dice_median": _median(r["dice"] for r in mine),
                    "hd95_mm_median": _median(r["hd95_mm"] for r in mine),
                    "worst_border": worst["typically"] if worst else "", "worst_border_mm": worst["median_abs_mm"]
                    if worst else None})
    out.sort(key=lambda r: (r["surface_dice_median"] if r["surface_dice_median"] is not None else 2.0, r["structure"]))
    return out


def trainee_summary(rows: list[dict], you_key: str | None = None) -> list[dict]:
    out = []
    for key in sorted({r["trainee_key"] for r in rows}, key=lambda k: (trainee_label(k, you_key) != "you", k)):
        mine = [r for r in rows if r["trainee_key"] == key]
        first, latest = {}, {}
        for r in mine:
            first.setdefault(r["structure"], r["surface_dice"])
            latest[r["structure"]] = r["surface_dice"]
        active = [r["active_s"] for r in mine if r["active_s"] is not None]
        out.append({"trainee": trainee_label(key, you_key), "n": len(mine), "structures": len(first),
                    "first_median": _median(first.values()), "latest_median": _median(latest.values()),
                    "active_min": sum(active) / 60.0 if active else None,
                    "last": max(r["submitted_at"] for r in mine)[:10]})
    return out


def _curves_plot(rows: list[dict], you_key: str | None) -> str:
    import matplotlib.pyplot as plt

    curves = learning_curves(rows)
    structures = _ordered_structures(rows)
    trainees = sorted({r["trainee_key"] for r in rows})
    colour = {k: _COLOURS[i % len(_COLOURS)] for i, k in enumerate(t for t in trainees if t != you_key)}
    columns = min(4, max(1, len(structures)))
    lines = (len(structures) + columns - 1) // columns
    height = 2.3 * lines + 0.9
    fig, axes = plt.subplots(lines, columns, figsize=(17, height), squeeze=False)
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.55 / height, bottom=0.35 / height, hspace=0.45, wspace=0.15)
    for ax in axes.ravel()[len(structures):]:
        ax.axis("off")
    for ax, structure in zip(axes.ravel(), structures):
        longest = 1
        for key, attempts in curves[structure].items():
            x = [a["n"] for a in attempts]
            y = [a["surface_dice"] for a in attempts]
            longest = max(longest, len(x))
            if key == you_key:
                ax.plot(x, y, "-o", color="#111111", linewidth=2.4, markersize=4, zorder=3)
            else:
                ax.plot(x, y, "-o", color=colour[key], linewidth=1.1, markersize=3, alpha=0.85)
        ax.set_title(structure, fontsize=9, pad=2)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(0.7, longest + 0.3)
        ax.set_xticks(range(1, longest + 1))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color="#111111", linewidth=2.4, label="you")] if you_key in trainees else []
    handles += [plt.Line2D([], [], color=colour[k], label=trainee_label(k)) for k in trainees if k != you_key]
    fig.legend(handles=handles, loc="upper center", ncol=min(8, len(handles)), fontsize=8, frameon=False)
    return _figure_tag(fig, "learning curves: surface Dice per attempt, per structure and trainee")


def _borders_plot(borders: list[dict]) -> str:
    import matplotlib.pyplot as plt

    top = borders[:12][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(top) + 1.0))
    y = np.arange(len(top))
    ax.barh(y, [b["median_abs_mm"] for b in top], color=["#e45756" if b["median_mm"] > 0 else "#4c78a8" for b in top])
    ax.set_yticks(y, [f"{b['structure']} {b['border']}" for b in top], fontsize=8)
    ax.set_xlabel("median distance from the reference's border (mm); red: beyond it, blue: short of it")
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.25, right=0.98, top=0.97, bottom=0.7 / (0.32 * len(top) + 1.0))
    return _figure_tag(fig, "the cohort's hardest borders")


def build_practice_report(rows: list[dict], you_key: str | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    trainees = {r["trainee_key"] for r in rows}
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>DKOAR practice report</title><style>{_STYLE}</style></head><body>",
             "<h1>DKOAR trainee practice: learning curves and the hardest borders</h1>"]
    dates = sorted(r["submitted_at"][:10] for r in rows)
    made = f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}"
    parts.append(f"<p class='note'>Made {made} UTC by dkoar {__version__}: "
                 f"{len(rows)} attempts by {len(trainees)} trainee(s) at {len({r['structure'] for r in rows})} "
                 "structure(s)" + (f", {dates[0]} to {dates[-1]}" if dates else "") + ". Trainees are shown by "
                 "their keyed pseudonym only" + ("; your own attempts as 'you'" if you_key in trainees else "")
                 + ". Scores as in dkoar compare: surface Dice at each structure's tolerance.</p>")
    if not rows:
        parts.append("<p>No attempts in the history yet.</p></body></html>")
        return "".join(parts)
    parts.append("<h2>Learning curves</h2><p class='note'>Surface Dice of each attempt, in the order made, one panel "
                 "per structure, one line per trainee.</p>")
    parts.append(_curves_plot(rows, you_key))
    parts.append("<h2>Trainees</h2>")
    parts.append(_table(trainee_summary(rows, you_key), [
        ("trainee", "trainee", 0), ("n", "attempts", 0), ("structures", "structures", 0),
        ("first_median", "median surface Dice, first attempts", 3),
        ("latest_median", "median surface Dice, latest attempts", 3), ("active_min", "active minutes", 1),
        ("last", "last attempt", 0)]))
    parts.append("<h2>The cohort's hardest structures</h2>")
    parts.append(_table(hardest_structures(rows), [
        ("structure", "structure", 0), ("n", "attempts", 0), ("trainees", "trainees", 0),
        ("surface_dice_median", "median surface Dice", 3), ("dice_median", "median Dice", 3),
        ("hd95_mm_median", "median HD95 mm", 1), ("worst_border", "border most off (median)", 0)]))
    borders = border_statistics(rows)
    parts.append("<h2>The cohort's hardest borders</h2>")
    parts.append(_borders_plot(borders))
    parts.append(_table([dict(b, off_share=100.0 * b["off_share"]) for b in borders[:15]], [
        ("structure", "structure", 0), ("border", "border", 0), ("n", "attempts", 0),
        ("median_abs_mm", "median distance mm", 1), ("typically", "typically", 0),
        ("off_share", "% of attempts beyond the tolerance", 0)]))
    parts.append("</body></html>")
    return "".join(parts)


def write_practice_report(histories: list[Path | str], out: Path | str, you_key: str | None = None
                          ) -> tuple[Path, list[dict]]:
    """Write the page; returns its path and the attempts it was made from."""
    rows = read_history(list(histories))
    page = build_practice_report(rows, you_key)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out, rows
