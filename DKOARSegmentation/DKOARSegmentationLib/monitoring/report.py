"""The national monitoring report: one self-contained HTML page and a CSV of its aggregates.

The page needs no network to be made or viewed: styles are inline, plots are PNG images embedded
as base64 data (matplotlib, Agg backend), nothing is fetched. It shows, from one or more
correction logs (``monitoring.py`` for the definitions):

- the physician time saved against the manual baseline;
- per structure: median active correction time, edit rate, APL and surface Dice (table and
  distributions);
- monthly control charts per structure with limits from a baseline period, flagged months listed;
- breakdowns by model version, by site, and by the CT's scanner / kernel, slice thickness and contrast;
- the review guidance: how often flagged or uncertain structures were edited against the rest, and
  the correction time by kind of flag (``guidance_report``).

The CSV holds the same aggregates (no case-level rows) for pooling across sites.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_path, check_output_file
from .aggregates import (
    AGGREGATE_COLUMNS,
    MANUAL_BASELINE_MIN,
    MonitoringData,
    aggregate_rows,
    breakdown,
    case_totals,
    control_charts,
    fmt,
    grouped,
    load_logs,
    per_structure,
    time_saved,
)

_STYLE = """
body { font-family: DejaVu Sans, Arial, sans-serif; margin: 24px; color: #222; max-width: 1350px; }
h1 { font-size: 24px; } h2 { font-size: 19px; border-bottom: 1px solid #ccc; margin-top: 32px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #eef2f6; } td:first-child, th:first-child { text-align: left; }
.flag { color: #b00020; font-weight: bold; } .note { color: #555; font-size: 12px; }
.kpi { display: inline-block; margin: 6px 18px 6px 0; padding: 10px 16px; background: #eef5ee; border-radius: 6px; }
.kpi b { font-size: 22px; display: block; }
img { max-width: 100%; }
"""


def _figure_tag(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _plain(text: str) -> str:
    """A label from a log (site, model, structure) drawn as it is written: matplotlib would read
    text between dollar signs as a formula, and fail on one it cannot parse; control characters
    are drawn as spaces."""
    return "".join(c if c.isprintable() else " " for c in str(text)).replace("$", r"\$")


def _table(rows: list[dict], columns: list[tuple[str, str, int]]) -> str:
    """columns: (key, heading, digits)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in columns)
    body = []
    for row in rows:
        cells = []
        for key, _, digits in columns:
            value = row.get(key)
            text = fmt(value, digits) if not isinstance(value, str) else value
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _horizontal_boxplot(ax, series, positions):
    options = dict(positions=positions, widths=0.6, showfliers=False, whis=(5, 95), patch_artist=True)
    try:
        return ax.boxplot(series, orientation="horizontal", **options)  # matplotlib >= 3.10
    except TypeError:
        return ax.boxplot(series, vert=False, **options)


def _structure_plots(data: MonitoringData) -> str:
    import matplotlib.pyplot as plt

    names = data.structures
    groups = grouped(data.row_structure, len(names))
    n = max(len(names), 1)
    fig, axes = plt.subplots(1, 4, figsize=(17, 0.28 * n + 1.6), sharey=True)
    y = np.arange(len(names))
    per = per_structure(data)
    active = [r["active_s_median"] if r["active_s_median"] is not None else 0.0 for r in per]
    edit = [100 * r["edit_rate"] if r["edit_rate"] is not None else 0.0 for r in per]
    axes[0].barh(y, active, color="#4c78a8")
    axes[0].set_title("median active correction time (s)")
    axes[1].barh(y, edit, color="#f58518")
    axes[1].set_title("edit rate (%)")
    axes[1].set_xlim(0, 100)
    for ax, metric, title, colour in ((axes[2], "apl_mm", "added path length (mm)", "#54a24b"),
                                      (axes[3], "surface_dice", "surface Dice at tolerance", "#b279a2")):
        series = [v[np.isfinite(v)] for v in (data.values[metric][rows] for rows in groups)]
        positions = [i for i, s in enumerate(series) if len(s)]
        if positions:
            box = _horizontal_boxplot(ax, [series[i] for i in positions], positions)
            for patch in box["boxes"]:
                patch.set_facecolor(colour)
                patch.set_alpha(0.6)
        ax.set_title(title)
    axes[3].set_xlim(0, 1.02)
    axes[0].set_yticks(y, [_plain(n) for n in names], fontsize=8)
    axes[0].set_ylim(len(names) - 0.5, -0.5)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    # fixed margins: tight_layout would cost a second of text measuring
    height = 0.28 * n + 1.6
    fig.subplots_adjust(left=0.09, right=0.99, top=1 - 0.45 / height, bottom=0.5 / height, wspace=0.08)
    return _figure_tag(fig, "per-structure correction effort and agreement")


def _control_chart_plot(charts, metric: str) -> str:
    import matplotlib.pyplot as plt

    columns = 4
    rows = max(1, (len(charts) + columns - 1) // columns)
    height = 2.0 * rows + 0.6
    fig, axes = plt.subplots(rows, columns, figsize=(17, height), squeeze=False, sharex=True)
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.3 / height, bottom=0.45 / height, hspace=0.35, wspace=0.18)
    for ax in axes.ravel()[len(charts):]:
        ax.axis("off")
    for ax, chart in zip(axes.ravel(), charts):
        x = np.arange(len(chart.months))
        has = chart.counts > 0
        ax.plot(x[has], chart.means[has], "-o", color="#4c78a8", markersize=3, linewidth=1)
        if chart.centre is not None:
            ax.axhline(chart.centre, color="#555", linewidth=0.8)
            ax.step(x, chart.upper, where="mid", color="#e45756", linewidth=0.8, linestyle="--")
            ax.step(x, chart.lower, where="mid", color="#e45756", linewidth=0.8, linestyle="--")
            ax.axvspan(-0.5, len(chart.baseline_months) - 0.5, color="#dddddd", alpha=0.5, linewidth=0)
        flagged = chart.flagged & has
        ax.plot(x[flagged], chart.means[flagged], "o", color="#d62728", markersize=6)
        ax.set_title(_plain(chart.structure), fontsize=9, pad=2)
        ax.tick_params(labelsize=7)
    if charts:
        months = charts[0].months
        step = max(1, len(months) // 6)
        ticks = np.arange(0, len(months), step)
        axes[0, 0].set_xticks(ticks, [_plain(months[i]) for i in ticks], fontsize=7)
        axes[0, 0].set_xlim(-0.5, len(months) - 0.5)
    for ax in axes.ravel():  # sharex hides inner labels; show them under every panel
        ax.tick_params(labelbottom=True)
    return _figure_tag(fig, f"control charts of {metric}")


def _breakdown_plot(data: MonitoringData) -> str:
    import matplotlib.pyplot as plt

    totals = case_totals(data)
    fig, axes = plt.subplots(1, 2, figsize=(17, 3.6))
    for ax, labels, title in ((axes[0], data.case_model, "by model version"), (axes[1], data.case_site, "by site")):
        names = sorted(set(labels.tolist()))
        series = [totals["active_s"][labels == name] / 60.0 for name in names]
        series = [s[np.isfinite(s)] for s in series]
        keep = [i for i, s in enumerate(series) if len(s)]
        if keep:
            ax.boxplot([series[i] for i in keep], showfliers=False, whis=(5, 95))
            ax.set_xticks(np.arange(1, len(keep) + 1), [_plain(names[i]) for i in keep], fontsize=8, rotation=15)
        ax.set_ylabel("active correction time per case (min)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.92, bottom=0.15, wspace=0.15)
    return _figure_tag(fig, "correction time by model version and by site")


def build_report(data: MonitoringData, metric: str = "surface_dice", baseline_months: int = 3,
                 baseline_min: float = MANUAL_BASELINE_MIN) -> tuple[str, list[dict]]:
    """The HTML page and the aggregate rows of the CSV."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    saved = time_saved(data, baseline_min)
    per = per_structure(data)
    charts = control_charts(data, metric, baseline_months)
    months = sorted(set(data.case_month.tolist()))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>DKOAR correction monitoring</title><style>{_STYLE}</style></head><body>"]
    parts.append("<h1>DKOAR organs at risk: correction monitoring</h1>")
    parts.append(f"<p class='note'>Made {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC by dkoar {__version__} "
                 f"from {len(data.logs)} log(s): {data.n_cases} finished cases, "
                 f"{len(set(data.case_site.tolist()))} site(s), {len(set(data.case_model.tolist()))} model version(s)"
                 + (f", months {months[0]} to {months[-1]}" if months else "")
                 + (f"; {data.duplicates} case(s) found in more than one log counted once" if data.duplicates else "")
                 + ". No patient identifiers are in this report.</p>")
    if data.n_cases == 0:
        parts.append("<p>No finished cases in the log(s) yet.</p></body></html>")
        return "".join(parts), []
    parts.append("<h2>Physician time</h2>")
    if saved["cases_timed"]:
        parts.append(
            f"<div class='kpi'><b>{saved['active_min_median']:.1f} min</b>median active correction time per case</div>"
            f"<div class='kpi'><b>{saved['saved_min_median']:.0f} min</b>median time saved per case</div>"
            f"<div class='kpi'><b>{saved['saved_hours_total']:.0f} h</b>saved in all {saved['cases_timed']} timed cases</div>"
            f"<p class='note'>Saved = manual baseline of {baseline_min:.0f} min for the 32 structures drawn by hand "
            "minus the case's active correction time (idle pauses excluded).</p>")
    else:
        parts.append("<p>No case has correction times yet.</p>")
    parts.append("<h2>Per structure</h2>")
    parts.append(_structure_plots(data))
    parts.append(_table(per, [("structure", "structure", 0), ("n", "cases", 0), ("active_s_median", "median active s", 1),
                              ("edit_rate", "edit rate", 2), ("edits_mean", "mean edits", 1),
                              ("apl_mm_median", "median APL mm", 1), ("surface_dice_median", "median surface Dice", 3),
                              ("dice_median", "median Dice", 3), ("hd95_mm_median", "median HD95 mm", 2)]))
    parts.append(f"<h2>Control charts: monthly mean {html.escape(metric)}</h2>")
    parts.append(f"<p class='note'>Limits from the baseline period ({html.escape(', '.join(charts[0].baseline_months) if charts else '')}): "
                 "mean of the baseline cases +- 3 SD / sqrt(cases in the month). Blue: monthly mean; grey band: "
                 "baseline period; black: centre line; dashed red: limits; red dots: months outside the limits.</p>")
    parts.append(_control_chart_plot(charts, metric))
    flagged = [{"structure": c.structure, "month": c.months[i], "mean": float(c.means[i]), "n": int(c.counts[i]),
                "lower": float(c.lower[i]), "upper": float(c.upper[i])}
               for c in charts for i in np.flatnonzero(c.flagged)]
    if flagged:
        parts.append(f"<p class='flag'>{len(flagged)} month(s) outside the limits:</p>")
        parts.append(_table(flagged, [("structure", "structure", 0), ("month", "month", 0), ("n", "cases", 0),
                                      ("mean", "mean", 3), ("lower", "lower limit", 3), ("upper", "upper limit", 3)]))
    else:
        parts.append("<p>No month outside the limits.</p>")
    parts.append("<h2>By model version and by site</h2>")
    parts.append(_breakdown_plot(data))
    columns = [("cases", "cases", 0), ("active_min_per_case_median", "median active min / case", 1),
               ("edit_rate", "edit rate", 2), ("apl_mm_per_case_median", "median APL mm / case", 0),
               ("surface_dice_median", "median surface Dice", 3), ("dice_median", "median Dice", 3)]
    for by, title in (("model", "model version"), ("site", "site"), ("scanner", "scanner / kernel"),
                      ("slice", "slice thickness"), ("contrast", "contrast")):
        parts.append(f"<h3>By {title}</h3>")
        parts.append(_table(breakdown(data, by), [(by, title, 0)] + columns))
    from .guidance_aggregates import guidance_section
    from .guidance_report import guidance_html

    parts.append(guidance_html(guidance_section(data)))
    parts.append("</body></html>")
    return "".join(parts), aggregate_rows(data)


def spreadsheet_text(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage
    return) would be run as a formula, so it gets a leading apostrophe, as spreadsheets do."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_aggregates_csv(rows: list[dict], path: Path | str) -> Path:
    path = Path(path)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(AGGREGATE_COLUMNS)
    for row in rows:
        writer.writerow([fmt(row.get(c), 6) if not isinstance(row.get(c), str) else spreadsheet_text(row[c])
                         for c in AGGREGATE_COLUMNS])
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
    return path


def write_report(logs: list[Path | str], out: Path | str, csv_path: Path | str | None = None,
                 metric: str = "surface_dice", baseline_months: int = 3,
                 baseline_min: float = MANUAL_BASELINE_MIN) -> tuple[Path, Path, MonitoringData]:
    """Write the HTML report and its aggregate CSV (default: beside it, suffix .csv)."""
    logs = list(logs)
    # refused before the logs are read: the page and its CSV must not overwrite each other or a log
    out = check_output_file(out, inputs=logs)
    csv_out = check_output_file(Path(csv_path) if csv_path else out.with_suffix(".csv"), inputs=(*logs, out))
    data = load_logs(logs)
    page, rows = build_report(data, metric, baseline_months, baseline_min)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    write_aggregates_csv(rows, csv_out)
    return out, csv_out, data
