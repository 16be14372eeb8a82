"""The review guidance of a case in the correction log: the AI result's plausibility flags, its
review list and each structure's uncertainty score (tables of schema version 3), so that the
monitoring report can say whether the guidance predicted the corrections."""

from __future__ import annotations

from pathlib import Path

from ..errors import DKOARError
from ..review.guidance import ReviewGuidance


def record_guidance(log, case_id: int, guidance: ReviewGuidance) -> None:
    """Store ``guidance`` for a case of an open ``correction_log.CorrectionLog``, in one transaction
    (joining an enclosing one; a case's earlier guidance is replaced)."""
    connection = log.connection
    case_id = int(case_id)
    with log.transaction():
        for table in ("flags", "review_regions", "structure_uncertainty"):
            connection.execute(f"DELETE FROM {table} WHERE case_id = ?", (case_id,))
        connection.executemany("INSERT INTO flags (case_id, structure, kind, severity, message) VALUES (?, ?, ?, ?, ?)",
                               [(case_id, f.structure, f.kind, f.severity, f.message) for f in guidance.flags])
        connection.executemany(
            "INSERT INTO review_regions (case_id, rank, structure, first_slice, last_slice, score, uncertain_ml) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(case_id, int(e["rank"]), e["structure"], e.get("first_slice"), e.get("last_slice"), e.get("score"),
              e.get("uncertain_ml")) for e in guidance.review])
        structures = (guidance.uncertainty or {}).get("structures", {})
        connection.executemany(
            "INSERT INTO structure_uncertainty (case_id, structure, score, uncertain_ml) VALUES (?, ?, ?, ?)",
            [(case_id, name, v.get("score"), v.get("uncertain_ml")) for name, v in structures.items()])


def read_guidance(connection, case_id: int) -> ReviewGuidance:
    """A case's guidance back from a log (an open connection)."""
    from ..review.flags import Flag

    flags = [Flag(*row) for row in connection.execute(
        "SELECT structure, kind, severity, message FROM flags WHERE case_id = ? ORDER BY rowid", (int(case_id),))]
    review = [dict(zip(("rank", "structure", "first_slice", "last_slice", "score", "uncertain_ml"), row))
              for row in connection.execute("SELECT rank, structure, first_slice, last_slice, score, uncertain_ml "
                                            "FROM review_regions WHERE case_id = ? ORDER BY rank", (int(case_id),))]
    structures = {row[0]: {"score": row[1], "uncertain_ml": row[2]} for row in connection.execute(
        "SELECT structure, score, uncertain_ml FROM structure_uncertainty WHERE case_id = ?", (int(case_id),))}
    return ReviewGuidance(flags, review, {"structures": structures} if structures else None)


def read_run_guidance(path: Path | str) -> ReviewGuidance:
    """The guidance a run wrote into its run.json."""
    from ..json_files import read_json_file

    path = Path(path)
    record = read_json_file(path, "run record")
    if not isinstance(record, dict) or "flags" not in record:
        raise DKOARError(f"{path}: not a run.json with review guidance (no flags); it comes from dkoar segment")
    return ReviewGuidance.from_record(record)
