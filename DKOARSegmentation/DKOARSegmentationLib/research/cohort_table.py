"""What ``dkoar cohort scan`` prints: the cases, per structure how many have it, every unmapped
ROI name with its count, and what the RTSTRUCTs hold that a reader must put up with."""

from __future__ import annotations

from ..structures.catalogue import Catalogue
from .cohort import Cohort


def cohort_lines(cohort: Cohort, catalogue: Catalogue) -> list[str]:
    usable = sum(case.usable for case in cohort.cases)
    lines = [f"{cohort.root}: {len(cohort.cases)} CT series with RTSTRUCTs ({usable} usable: two slices or more), "
             f"{len(cohort.without_ct)} RTSTRUCTs whose CT is not in the folder"]
    counts = cohort.structure_counts(catalogue)
    found = {name: c for name, c in counts.items() if c["cases"] or c["without_ct"]}
    lines.append(f"{'structure':<18} {'cases':>5} {'usable':>6} {'no CT':>5}")
    for name, c in found.items():
        lines.append(f"{name:<18} {c['cases']:>5} {c['usable']:>6} {c['without_ct']:>5}")
    missing = [name for name in counts if name not in found]
    if missing and len(missing) <= len(counts) // 2:
        lines.append(f"no case has: {', '.join(missing)}")
    elif missing:
        lines.append(f"no case has any of the other {len(missing)} catalogue structures")
    unmapped = cohort.name_counts(("unmapped",))
    lines.append(f"unmapped ROI names ({len(unmapped)}; RTSTRUCTs using each): "
                 + (", ".join(f"{name} ({n})" for name, n in unmapped.items()) or "none"))
    ignored = cohort.name_counts(("ignored",))
    if ignored:
        lines.append("ignored by the mapping file: " + ", ".join(f"{name} ({n})" for name, n in ignored.items()))
    for case in cohort.cases:
        for rt in case.rtstructs:
            note = "; ".join(rt.notes + (["every ROI AUTOMATIC: a model's output, not a reference"]
                                         if rt.automatic else []))
            lines.append(f"  {case.case_id} ({case.slices} slices) {rt.path} [{rt.manufacturer or 'unknown'}; "
                         f"matched by {rt.matched_by}]" + (f": {note}" if note else ""))
    for rt in cohort.without_ct:
        lines.append(f"  no CT: {rt.path} [{rt.manufacturer or 'unknown'}]" + (f": {'; '.join(rt.notes)}" if rt.notes else ""))
    for item in cohort.files.get("unreadable", []):
        lines.append(f"  cannot use {item['file']}: {item['why']}")
    return lines
