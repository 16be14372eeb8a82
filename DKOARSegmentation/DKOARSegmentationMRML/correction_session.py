"""A correction session: "Start correcting" keeps the AI result, "Finish" says what changed.

``start()`` keeps the segmentation as it is (the AI result) as a catalogue label map on the CT
grid, records a "start" event and starts the EditObserver. ``finish()`` records "finish", compares
every structure with its baseline voxel by voxel and returns exactly the changed ones (to be
written SEMIAUTOMATIC), with the per-structure times of the core's correction_times.

The sink receives every event as it happens (``record_event(event)``). If it also has
``record_case(result)`` the finished case is handed to it. ``correction_log_sink.CorrectionLogSink``
is that sink for the core's SQLite correction log (``DKOARSegmentationLib.monitoring.correction_log``);
any object with these two methods will do (tests use a list).

The baseline is a label map: it is what the AI gave (structures do not overlap in it), and one
uint8 array is small. Structures are compared as bounding box + mask, so a full-size CT costs
little more than its structures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.monitoring.correction_timing import EditorEvent, SessionTiming, correction_times
from DKOARSegmentationLib.structures.catalogue import Catalogue, default_catalogue
from DKOARSegmentationLib.volume import Segmentation

from .edit_observer import EditObserver, EventSink
from .readback import label_masks, masks_to_labels, segment_masks, segmentation_to_core


@dataclass
class CorrectionResult:
    changed: frozenset[str]  # structures whose voxels differ from the AI baseline (SEMIAUTOMATIC)
    unchanged: frozenset[str]
    timing: SessionTiming
    events: tuple[EditorEvent, ...]
    baseline: Segmentation  # the AI result as it was when correcting started
    final: Segmentation  # the corrected result, catalogue numbering on the CT grid
    removed: frozenset[str] = field(default_factory=frozenset)  # structures whose segment was deleted
    added: frozenset[str] = field(default_factory=frozenset)  # structures drawn that the AI did not give


class CorrectionSession:
    def __init__(self, segmentation_node, reference_volume_node, sink: EventSink | None = None,
                 editor_node=None, catalogue: Catalogue | None = None, idle_cutoff_s: float = 30.0,
                 clock: Callable[[], float] = time.time, defer: Callable | None = None):
        self.segmentation_node = segmentation_node
        self.reference_volume_node = reference_volume_node
        self.catalogue = catalogue or default_catalogue()
        self.idle_cutoff_s = idle_cutoff_s
        self.sink = sink
        self.observer = EditObserver(segmentation_node, sink, editor_node, self.catalogue, clock, defer)
        self.baseline: Segmentation | None = None
        self.result: CorrectionResult | None = None

    @property
    def running(self) -> bool:
        return self.observer.active

    @property
    def events(self) -> list[EditorEvent]:
        return self.observer.events

    def start(self) -> None:
        if self.running:
            raise DKOARError("correcting has already started")
        self.baseline = segmentation_to_core(self.segmentation_node, self.reference_volume_node, self.catalogue)
        self.result = None
        self.observer.start()
        self.observer.emit("start")

    def live_timing(self) -> SessionTiming:
        """Per-structure times so far (for a live table)."""
        return correction_times(self.observer.events, self.idle_cutoff_s)

    def finish(self) -> CorrectionResult:
        if not self.running or self.baseline is None:
            raise DKOARError("correcting has not started")
        self.observer.check()  # an edit not yet seen (events batched by the node)
        self.observer.emit("finish")
        self.observer.stop()
        masks = segment_masks(self.segmentation_node, self.reference_volume_node, self.catalogue)
        baseline_names = {s.name for s in self.baseline.structures}
        before = label_masks(self.baseline.labels, self.baseline.structures)
        changed, unchanged = set(), set()
        for structure in self.catalogue:
            in_baseline, in_final = structure.name in baseline_names, structure.name in masks
            if not in_baseline and not in_final:
                continue
            if in_baseline and not in_final:
                same = False  # a deleted segment is a correction
            elif not in_baseline:
                same = masks[structure.name].empty  # an empty segment added changes nothing
            else:
                same = before[structure.name].same_voxels(masks[structure.name])
            (unchanged if same else changed).add(structure.name)
        final = Segmentation(masks_to_labels(masks, self.baseline.labels.shape, self.catalogue),
                             self.baseline.affine.copy(), tuple(s for s in self.catalogue if s.name in masks),
                             {"source": f"Slicer segmentation {self.segmentation_node.GetName()}, corrected"})
        self.result = CorrectionResult(
            changed=frozenset(changed), unchanged=frozenset(unchanged),
            timing=correction_times(self.observer.events, self.idle_cutoff_s),
            events=tuple(self.observer.events), baseline=self.baseline, final=final,
            removed=frozenset(baseline_names - set(masks)), added=frozenset(set(masks) - baseline_names),
        )
        if self.sink is not None and hasattr(self.sink, "record_case"):
            self.sink.record_case(self.result)
        return self.result


def timing_rows(timing: SessionTiming, changed=None) -> list[dict]:
    """A live table of correction times: one row per structure (name, active_s, edits, changed),
    most active first; after Finish (``changed``: what it found corrected) every changed structure
    is listed, edited through the observer or not."""
    rows = sorted(timing.structures.items(), key=lambda item: (-item[1].active_s, item[0]))
    if changed is not None:
        rows += [(name, None) for name in sorted(changed) if name not in timing.structures]
    return [{"name": name, "active_s": round(t.active_s, 1) if t else 0.0, "edits": t.edits if t else 0,
             "changed": changed is not None and name in changed} for name, t in rows]
