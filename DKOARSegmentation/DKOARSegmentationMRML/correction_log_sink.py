"""The correction session's events and results into the core's SQLite correction log.

``CorrectionLogSink`` adapts ``DKOARSegmentationLib.monitoring.correction_log.CorrectionLog`` to what the
session calls: ``record_event(EditorEvent)`` for every event as it happens (one row per structure;
a stroke that changed several structures writes one row for each, with the whole list in
``detail``, so that the stream can be replayed into ``correction_times``), and ``record_case``
when "Finish" is pressed (per-structure times, the unchanged flag, and the AI-versus-final metrics
of ``comparison.py`` when ``metrics`` is on).
"""

from __future__ import annotations

from DKOARSegmentationLib.monitoring.correction_timing import EditorEvent


class CorrectionLogSink:
    def __init__(self, log, case_id: int, metrics: bool = True, final_contours_sha256: str | None = None):
        self.log = log  # a DKOARSegmentationLib.monitoring.correction_log.CorrectionLog
        self.case_id = int(case_id)
        self.metrics = metrics
        self.final_contours_sha256 = final_contours_sha256

    def record_event(self, event: EditorEvent) -> None:
        detail = {"segments": list(event.segments)} if len(event.segments) > 1 else None
        for structure in event.segments or (None,):
            self.log.record_event(self.case_id, structure, event.kind, timestamp=event.time, detail=detail)

    def record_case(self, result) -> None:
        """Close the case with a CorrectionResult (correction_session)."""
        from DKOARSegmentationLib.monitoring.correction_log import StructureResult

        comparisons = {}
        if self.metrics:
            from DKOARSegmentationLib.monitoring.comparison import compare_segmentations

            comparisons = compare_segmentations(result.baseline, result.final)
        rows = {}
        for name in sorted(result.changed | result.unchanged):
            timing = result.timing.structures.get(name)
            times = {"active_s": timing.active_s, "wall_s": timing.wall_s, "edits": timing.edits} if timing else \
                {"active_s": 0.0, "wall_s": 0.0, "edits": 0}
            row = StructureResult.from_parts(comparisons.get(name), times)
            row.unchanged = name in result.unchanged
            rows[name] = row
        self.log.finish_case(self.case_id, rows, final_contours_sha256=self.final_contours_sha256)


def events_from_log(rows: list[dict]) -> list[EditorEvent]:
    """The EditorEvents of a case back from the log's event rows (rows of one stroke merged)."""
    import json

    events, seen = [], set()
    for row in rows:
        detail = json.loads(row["detail"]) if row.get("detail") else {}
        segments = tuple(detail.get("segments") or ((row["structure"],) if row["structure"] else ()))
        key = (row["timestamp"], row["kind"], segments)
        if len(segments) > 1 and key in seen:
            continue
        seen.add(key)
        events.append(EditorEvent(row["timestamp"], row["kind"], segments))
    return events
