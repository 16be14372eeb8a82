"""The monitoring report's section on the review guidance: were the structures that were flagged,
or that the model's uncertainty put first, edited more often than the rest, and what did each kind
of flag cost in correction time? (numbers: ``guidance_aggregates``)"""

from __future__ import annotations

import html

from .aggregates import fmt

SECTION_ID = "review-guidance"


def _bar_plot(groups: list[dict]) -> str:
    import matplotlib.pyplot as plt

    from .report import _figure_tag

    shown = [g for g in groups if g["edit_rate"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(shown), 1) + 0.9))
    ax.barh(range(len(shown)), [100 * g["edit_rate"] for g in shown], color="#e45756")
    ax.set_yticks(range(len(shown)), [f"{g['group']} (n={g['n']})" for g in shown], fontsize=9)
    ax.set_ylim(len(shown) - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("edited (%)")
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.38, right=0.98, top=0.95, bottom=0.6 / (0.45 * max(len(shown), 1) + 0.9))
    return _figure_tag(fig, "edit rate of flagged and uncertain structures against the rest")


def _rows(items: list[dict]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(r['group'])}</td><td>{r['n']}</td><td>{fmt(None if r['edit_rate'] is None else 100 * r['edit_rate'], 0)}</td>"
        f"<td>{fmt(r['active_s_median'], 1)}</td><td>{fmt(r['active_s_mean'], 1)}</td></tr>" for r in items)
    return ("<table><tr><th>structures</th><th>results</th><th>edited %</th><th>median active s</th>"
            f"<th>mean active s</th></tr>{body}</table>")


def guidance_html(section: dict | None) -> str:
    """The section's HTML (a note when no logged case carries guidance)."""
    parts = [f"<h2 id='{SECTION_ID}'>Review guidance: does it predict the work?</h2>"]
    if section is None:
        parts.append("<p>No logged case carries review guidance (plausibility flags, review list) yet.</p>")
        return "".join(parts)
    parts.append(f"<p class='note'>{section['cases']} case(s) with guidance. Flagged: a plausibility flag of "
                 "severity warning or error on the AI result; uncertain: in the review list shown to the clinician "
                 "(the structures the model was least sure of). Edited: not accepted unchanged.</p>")
    parts.append(_bar_plot(section["groups"]))
    parts.append(_rows(section["groups"]))
    if section["auc"] is not None:
        parts.append(f"<p>The uncertainty score tells edited from unedited structures with an AUC of "
                     f"<b>{section['auc']:.2f}</b> ({section['auc_n']} structure results; 0.5 is chance).</p>")
    parts.append("<h3>Correction time by kind of flag</h3>")
    parts.append(_rows(section["by_kind"]))
    return "".join(parts)
