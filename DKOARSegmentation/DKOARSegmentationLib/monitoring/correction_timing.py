"""How long a clinician spent correcting each structure, from the Segment Editor's events.

A pure function of an event stream, so that the rule can be tested without Slicer and the
Slicer module only has to record events. The rule:

- Time is counted in the intervals between consecutive events of the session (a segment selected,
  an effect chosen, an edit, an undo). An interval that ends in an edit is working time for each
  structure that edit changed: one paint stroke that changes several segments counts for each
  of them. An undo or redo is an edit of the structures it changes.
- An interval longer than the idle cut-off (default 30 s) is a pause and counts for nobody, so
  looking away, answering the phone or reviewing without editing is not correction time.
- Wall time of a structure runs from its first event (selected or edited) to its last edit.

Published tools exclude pauses over 10 or 30 s; selection time alone (SlicerNeuroSegmentation's
timer) overstates effort, since a segment stays selected while nothing is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

EDIT_KINDS = ("edit", "undo", "redo")
EVENT_KINDS = ("start", "select", "effect", "finish") + EDIT_KINDS


@dataclass(frozen=True)
class EditorEvent:
    time: float  # seconds on one clock (time.time() or time.monotonic())
    kind: str  # one of EVENT_KINDS
    segments: tuple[str, ...] = ()  # edit/undo/redo: the structures changed; select: the one selected

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown editor event kind {self.kind!r}")


@dataclass
class StructureTiming:
    active_s: float = 0.0
    wall_s: float = 0.0
    edits: int = 0
    first_s: float | None = None
    last_edit_s: float | None = None


@dataclass
class SessionTiming:
    structures: dict[str, StructureTiming] = field(default_factory=dict)
    active_s: float = 0.0  # counted once, however many structures an edit changed
    wall_s: float = 0.0
    idle_cutoff_s: float = 30.0


def correction_times(events: Iterable[EditorEvent], idle_cutoff_s: float = 30.0) -> SessionTiming:
    ordered = sorted(events, key=lambda e: e.time)
    result = SessionTiming(idle_cutoff_s=idle_cutoff_s)
    if not ordered:
        return result
    result.wall_s = ordered[-1].time - ordered[0].time
    previous: EditorEvent | None = None
    for event in ordered:
        for name in event.segments:
            timing = result.structures.setdefault(name, StructureTiming())
            if timing.first_s is None:
                timing.first_s = event.time
        if event.kind in EDIT_KINDS:
            gap = event.time - previous.time if previous is not None else 0.0
            working = gap if gap <= idle_cutoff_s else 0.0
            result.active_s += working
            for name in set(event.segments):
                timing = result.structures[name]
                timing.active_s += working
                timing.edits += 1
                timing.last_edit_s = event.time
        previous = event
    for timing in result.structures.values():
        if timing.last_edit_s is not None and timing.first_s is not None:
            timing.wall_s = timing.last_edit_s - timing.first_s
    return result
