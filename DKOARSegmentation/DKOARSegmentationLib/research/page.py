"""The evaluation as one self-contained HTML page (and its JSON beside it).

One row per structure: each model's mean Dice, surface Dice, HD95 and APL, B's paired difference
with its 95 % interval drawn as a bar on a common Dice scale, and the verdict. Nothing is
loaded from elsewhere: the page opens offline, in any browser.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..atomic import atomic_path
from .evaluation import METRICS, Evaluation, evaluation_document

VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#c62828", "no clear difference": "#6b6b6b",
                   "too few cases": "#9e9e9e"}
LABELS = {"dice": "Dice", "surface_dice": "surface Dice", "hd95_mm": "HD95 mm", "apl_mm": "APL mm"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 22px; margin-bottom: 4px; } p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e2e2e2; text-align: right; white-space: nowrap; }
th { background: #f4f4f6; position: sticky; top: 0; } td.name { text-align: left; font-weight: 600; }
td.verdict { text-align: left; font-weight: 600; } .ci { color: #666; font-size: 11px; }
.legend span { display: inline-block; margin-right: 14px; } .swatch { width: 10px; height: 10px; display: inline-block; }
"""


def _number(value, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _bar(difference: dict, colour: str, scale: float = 0.5) -> str:
    """B - A in Dice with its interval, on -scale..+scale; zero in the middle."""
    width, height = 160, 16
    if difference["mean"] is None:
        return ""

    def x(v: float) -> float:
        return width / 2 + max(-1.0, min(1.0, v / scale)) * (width / 2 - 4)

    low, high = difference["ci95"] or (difference["mean"], difference["mean"])
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="Dice difference">'
            f'<line x1="{width / 2}" y1="0" x2="{width / 2}" y2="{height}" stroke="#999"/>'
            f'<line x1="{x(low):.1f}" y1="8" x2="{x(high):.1f}" y2="8" stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{x(difference["mean"]):.1f}" cy="8" r="4" fill="{colour}"/></svg>')


def evaluation_html(evaluation: Evaluation) -> str:
    a, b = evaluation.models
    head = "".join(f"<th>{LABELS[m]} A</th><th>{LABELS[m]} B</th><th>B&minus;A [95% interval]</th>" for m in METRICS)
    rows = []
    counts: dict[str, int] = {}
    for name, s in evaluation.summary.items():
        colour = VERDICT_COLOURS[s["verdict"]]
        counts[s["verdict"]] = counts.get(s["verdict"], 0) + 1
        cells = []
        for m in METRICS:
            d = s["difference"][m]
            digits = 3 if m in ("dice", "surface_dice") else 1
            interval = (f'<br><span class="ci">[{_number(d["ci95"][0], digits, True)}, '
                        f'{_number(d["ci95"][1], digits, True)}]</span>') if d["ci95"] else ""
            cells.append(f"<td>{_number(s['A'][m], digits)}</td><td>{_number(s['B'][m], digits)}</td>"
                         f"<td style='color:{VERDICT_COLOURS[d['verdict']]}'>{_number(d['mean'], digits, True)}"
                         f"{interval}</td>")
        rows.append(f"<tr><td class='name'>{html.escape(name)}</td><td>{s['cases']}</td>"
                    f"<td class='verdict' style='color:{colour}'>B {html.escape(s['verdict'])}</td>"
                    f"<td>{_bar(s['difference']['dice'], colour)}</td>{''.join(cells)}</tr>")
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    legend = "".join(f'<span><i class="swatch" style="background:{c}"></i> {v}</span>'
                     for v, c in VERDICT_COLOURS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dkoar evaluate: {html.escape(b.identity)} against {html.escape(a.identity)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(b.identity)} (B) against {html.escape(a.identity)} (A)</h1>
<p class="sub">{len(evaluation.cases)} cases, each model against the clinicians' contours; B&minus;A paired by case,
95 % bootstrap interval ({evaluation.resamples} resamples). Verdict per structure from Dice: {html.escape(tally)}.
Surface Dice at each structure's tolerance; HD95 and APL (added path length) lower is better.</p>
<p class="legend">{legend}</p>
<table><thead><tr><th>structure</th><th>n</th><th>verdict</th><th>Dice B&minus;A (&plusmn;0.5)</th>{head}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p class="sub">A: {html.escape(a.identity)}, manifest sha256 {a.sha256[:16]}&hellip;;
B: {html.escape(b.identity)}, manifest sha256 {b.sha256[:16]}&hellip;. The numbers are in the JSON beside this page.</p>
</body></html>
"""


def write_evaluation(evaluation: Evaluation, out: Path | str) -> tuple[Path, Path]:
    """Write the page ``out`` and ``out`` with suffix .json."""
    out = Path(out)
    document = out.with_suffix(".json")
    with atomic_path(document) as tmp:
        tmp.write_text(json.dumps(evaluation_document(evaluation), indent=1) + "\n", encoding="utf-8")
    with atomic_path(out) as tmp:
        tmp.write_text(evaluation_html(evaluation), encoding="utf-8")
    return out, document
