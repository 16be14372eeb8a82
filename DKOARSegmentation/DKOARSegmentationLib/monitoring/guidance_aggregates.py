"""Does the review guidance predict the work? Per structure result of the logs, what its AI result
was told (flagged, and how seriously; in the review list; its uncertainty score), and the numbers
of the report's section: how often flagged or uncertain structures were edited against the rest,
and the correction time by kind of flag.

A structure counts as "uncertain" when it was in the review list the clinician was shown. Results
of cases logged without guidance (older logs, contours added from files without run.json) are
left out of the section.
"""

from __future__ import annotations

import numpy as np

from ..review.flags import KINDS, SEVERITIES


def guidance_of_cases(connection, index_of: dict[int, int]) -> dict[tuple[int, str], dict]:
    """(case position, structure) -> {"flag_rank", "kinds", "score", "in_review"} for the cases of a
    log (its case_id -> position in the pooled data) that have guidance; ``(position, None)`` marks
    a case with guidance."""
    out: dict = {}
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "flags" not in tables:
        return out

    def entry(case_id, structure):
        position = index_of.get(case_id)
        if position is None:
            return None
        out[(position, None)] = {}
        return out.setdefault((position, structure), {"flag_rank": -1, "kinds": set(), "score": np.nan,
                                                      "in_review": False})

    for case_id, structure, kind, severity in connection.execute("SELECT case_id, structure, kind, severity FROM flags"):
        e = entry(case_id, structure)
        if e is not None:
            e["flag_rank"] = max(e["flag_rank"], SEVERITIES.index(severity))
            e["kinds"].add(kind)
    for case_id, structure in connection.execute("SELECT case_id, structure FROM review_regions"):
        e = entry(case_id, structure)
        if e is not None:
            e["in_review"] = True
    for case_id, structure, score in connection.execute("SELECT case_id, structure, score FROM structure_uncertainty"):
        e = entry(case_id, structure)
        if e is not None and score is not None:
            e["score"] = float(score)
    return out


def guidance_columns(rows_case: np.ndarray, rows_structure: list[str], found: dict) -> dict[str, np.ndarray]:
    """Per result row: flag_rank (-1 none, 0 info, 1 warning, 2 error; NaN: the case has no
    guidance), kinds (a frozenset), score, in_review (1/0; NaN without guidance)."""
    n = len(rows_case)
    rank, score, review = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    kinds = np.empty(n, dtype=object)
    for i, (case, structure) in enumerate(zip(rows_case.tolist(), rows_structure)):
        kinds[i] = frozenset()
        if (case, None) not in found:
            continue
        e = found.get((case, structure), {"flag_rank": -1, "kinds": set(), "score": np.nan, "in_review": False})
        rank[i], score[i], review[i] = e["flag_rank"], e["score"], float(e["in_review"])
        kinds[i] = frozenset(e["kinds"])
    return {"flag_rank": rank, "kinds": kinds, "score": score, "in_review": review}


def _summary(values: dict[str, np.ndarray], rows: np.ndarray, label: str) -> dict:
    unchanged = values["unchanged"][rows]
    known = np.isfinite(unchanged)
    active = values["active_s"][rows]
    active = active[np.isfinite(active)]
    return {"group": label, "n": int(len(rows)),
            "edit_rate": float(np.mean(unchanged[known] == 0)) if known.any() else None,
            "active_s_median": float(np.median(active)) if len(active) else None,
            "active_s_mean": float(np.mean(active)) if len(active) else None}


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The area under the ROC curve of ``scores`` for ``positive`` (ties count half); None
    without both classes."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def guidance_section(data) -> dict | None:
    """The report's numbers: ``groups`` (flagged, uncertain, either, neither), ``by_kind`` (each kind
    of flag and no flag), ``auc`` of the uncertainty score for an edit, ``cases``; None when no
    logged case has guidance."""
    g = data.guidance
    if not len(g.get("flag_rank", ())):
        return None
    has = np.isfinite(g["flag_rank"])
    if not has.any():
        return None
    flagged = has & (g["flag_rank"] >= 1)
    uncertain = has & (g["in_review"] == 1)
    rows = np.arange(len(has))
    groups = [_summary(data.values, rows[flagged], "flagged (warning or error)"),
              _summary(data.values, rows[uncertain], "in the review list (uncertain)"),
              _summary(data.values, rows[flagged | uncertain], "flagged or uncertain"),
              _summary(data.values, rows[has & ~flagged & ~uncertain], "neither (the rest)")]
    by_kind = [_summary(data.values, rows[has & np.array([kind in k for k in g["kinds"]], dtype=bool)], kind)
               for kind in KINDS]
    by_kind.append(_summary(data.values, rows[has & (g["flag_rank"] < 1)], "no flag above info"))
    edited = data.values["unchanged"] == 0
    scored = has & np.isfinite(g["score"]) & np.isfinite(data.values["unchanged"])
    return {"groups": groups, "by_kind": [k for k in by_kind if k["n"]],
            "auc": auc(g["score"][scored], edited[scored]), "auc_n": int(scored.sum()),
            "cases": int(len(set(data.row_case[has].tolist())))}
