"""The review and correction controls of the station: what the structure list and the Segment
Editor panel do (a mixin of StationApp, which holds the scene, the logic and the page's state).

Review: select a structure (and centre the views on it), visibility, opacity, 3D surfaces.
Correcting starts when a result is shown; trame-slicer's editor reports its selection and effect to
the logic, which times the edits; undo and redo are the MRML logic's history; Finish stores the
case. After a stroke the views render first: the comparison for the timing and the history waits
``AFTER_VIEWS_S`` (the edit is timed when it happened).
"""

from __future__ import annotations

import asyncio
import logging
import time

from trame.app import asynchronous

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationMRML import review
from DKOARSegmentationMRML.correction_session import timing_rows

from .guard import guarded

log = logging.getLogger("dkoar.station")

# after a stroke, the slice views render and send their images first; comparing the segments for
# the correction timing and the undo history waits this long (the edit is timed when it happened)
AFTER_VIEWS_S = 0.25
VOLUME_REFRESH_S = 2.0  # the volumes are recounted this long after the last edit (not between strokes)
# Slicer's Segment Editor keys that trame-slicer's editor has: its first three effects by number
EFFECT_KEYS = {"1": "Paint", "2": "Draw", "3": "Erase"}


class EditingControls:
    """The structure list's and the Segment Editor panel's controls (a mixin of StationApp)."""

    # -- review -----------------------------------------------------------------------------------

    def _refresh_structures(self) -> None:
        if self.segmentation_node is None:
            self.state.st_structures = []
            return
        rows = review.structure_rows(self.segmentation_node, self.ct_node, volumes=self._volumes)
        shown = self._flagged_rows([row.as_dict() for row in rows])  # guidance.GuidanceControls
        groups: dict[str, list] = {}
        for row, values in zip(rows, shown):
            groups.setdefault(row.group, []).append(values)
        self.state.st_structures = [{"group": g, "rows": members} for g, members in groups.items()]

    def _require_result(self) -> None:
        if self.segmentation_node is None:
            raise DKOARError("run the model first: there are no structures yet")

    @guarded
    def select_structure(self, segment_id: str) -> None:
        """Select a structure for editing and centre the views on it."""
        self._require_result()
        self.editor.set_active_segment_id(segment_id)
        self.state.st_selected = segment_id
        if self._volumes.get(self._name_of(segment_id), 1.0) > 0:
            review.jump_to_structure(self.segmentation_node, segment_id, self.ct_node)

    def _name_of(self, segment_id: str) -> str:
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
        return segment.GetName() if segment is not None else segment_id

    @guarded
    def toggle_visible(self, segment_id: str) -> None:
        self._require_result()
        display = self.segmentation_node.GetDisplayNode()
        review.set_structure_visible(self.segmentation_node, segment_id, not display.GetSegmentVisibility(segment_id))
        self._refresh_structures()

    @guarded
    def set_opacity(self, segment_id: str, opacity) -> None:
        self._require_result()
        review.set_structure_opacity(self.segmentation_node, segment_id, float(opacity))
        self._refresh_structures()

    @guarded
    def show_surfaces(self, on) -> None:
        self.state.st_show3d = bool(on)
        if self.segmentation_node is not None:
            self.say("Making the 3D surfaces..." if on else "3D surfaces hidden.")
            self.editor.set_surface_representation_enabled(bool(on))
            if on:
                self.say("3D surfaces shown.", "success")

    # -- correcting -------------------------------------------------------------------------------

    @property
    def _correcting(self) -> bool:
        session = self.logic.correctionSession
        return session is not None and session.running

    @guarded
    def start_correcting(self) -> None:
        self._require_result()
        self._start_correcting()
        self.say("Correcting: edits are timed.", "success")

    def _start_correcting(self) -> None:
        self.logic.startCorrecting(self.segmentation_node, self.ct_node, logPath=str(self.options.log_path),
                                   site=self.options.site, siteKeyPath=str(self.options.site_key or ""),
                                   idleCutoffSeconds=30.0, listener=self._on_correction_event,
                                   deferChecks=self._after_views)
        self.logic.segmentSelected(self.editor.get_active_segment_id())
        self.logic.effectChosen(self._effect_name())
        self.state.st_correcting, self.state.st_times, self.state.st_summary = True, [], ""
        self.state.st_edits = 0

    def _effect_name(self) -> str:
        """The active effect's short name ("Paint"), empty for none."""
        name = self.editor.get_active_effect_name().rsplit(".", 1)[-1].replace("SegmentationEffect", "")
        return "" if name in ("", "NoTool") else name

    def _on_segment_selected(self, segment_id="", *_) -> None:
        self.logic.segmentSelected(segment_id or "")
        self.state.st_selected = segment_id or ""

    def _on_effect_chosen(self, *_) -> None:
        name = self._effect_name()
        self.state.st_effect = name
        self.logic.effectChosen(name)

    def _after_views(self, callback) -> None:
        """Call back once the views have had time to render and send the stroke's images."""
        def run() -> None:
            with self.state:
                callback()

        asyncio.get_running_loop().call_later(AFTER_VIEWS_S, run)

    def _on_segmentation_modified(self, *_) -> None:
        """Each change of the segmentation (an effect applied) is one step of the undo history."""
        self._note_practice_edit()  # practice.PracticeControls
        if self.history is not None and not self._history_due:
            self._history_due = True
            self._after_views(self._record_history)

    def _record_history(self) -> None:
        self._history_due = False
        if self.history is not None and self.history.node is self.editor.active_segmentation_node:
            self.history.record()

    def _on_correction_event(self, event) -> None:
        """The live times, sent at once: an edit arrives inside a view's mouse event, which
        flushes no state of its own."""
        session = self.logic.correctionSession
        if session is None:
            return
        with self.state:
            self._show_times(session.live_timing())
            if event.kind == "edit":
                self.state.st_edits = int(self.state.st_edits or 0) + 1
                self._volumes_due = time.monotonic() + VOLUME_REFRESH_S
                asynchronous.create_task(self._refresh_volumes_later())

    async def _refresh_volumes_later(self) -> None:
        await asyncio.sleep(VOLUME_REFRESH_S)
        if self._volumes_due is None or time.monotonic() < self._volumes_due or self.segmentation_node is None:
            return
        self._volumes_due = None
        with self.state:
            self._volumes = review.structure_volumes(self.segmentation_node, self.ct_node)
            self._refresh_structures()

    def _show_times(self, timing, changed=None) -> None:
        self.state.st_times = timing_rows(timing, changed)

    @guarded
    def finish(self) -> None:
        if not self._correcting:
            raise DKOARError("correcting has not started: run the model, or press Start correcting")
        result = self.logic.finishCorrecting()
        self.state.st_correcting = False
        self._show_times(result.timing, result.changed)
        self._volumes = review.structure_volumes(self.segmentation_node, self.ct_node)
        self._refresh_structures()
        self.state.st_summary = (f"{len(result.changed)} structures corrected (SEMIAUTOMATIC on export), "
                                 f"{len(result.unchanged)} accepted unchanged; "
                                 f"{result.timing.active_s:.0f} s of active correction. The case is in the log.")
        self.say(self.state.st_summary, "success")
        log.info("correcting finished: %d structures changed, %.1f s active", len(result.changed),
                 result.timing.active_s)

    @guarded
    def undo(self) -> None:
        self._undo_redo(undo=True)

    @guarded
    def redo(self) -> None:
        self._undo_redo(undo=False)

    def _undo_redo(self, undo: bool) -> None:
        if self.history is None:
            raise DKOARError("run the model first: there is nothing to undo")
        done = self.history.undo() if undo else self.history.redo()
        if not done:
            self.say("Nothing to undo." if undo else "Nothing to redo.")
            return
        self.logic.checkEdits()  # the observer has seen it already; this makes sure
        self.editor.active_segmentation.trigger_modified()

    @guarded
    def key(self, name: str) -> None:
        """Slicer's Segment Editor keys: Escape leaves the effect, 1-3 choose Paint, Draw, Erase."""
        if self.segmentation_node is None and not self._practising:
            return
        if name == "Escape":
            self.editor.deactivate_effect()
        elif name in EFFECT_KEYS:
            wanted = [e for e in self.editor.builtin_effects if e.__name__ == f"SegmentationEffect{EFFECT_KEYS[name]}"]
            if wanted:
                self.editor.set_active_effect_type(wanted[0])
