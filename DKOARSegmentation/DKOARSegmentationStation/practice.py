"""Trainee mode in the station (a mixin of StationApp): a practice round against a hidden reference.

The trainee picks a case (a synthetic phantom, or the open CT with a reference file inside the
data folder: an approved RTSTRUCT or a label map) and the structures; the guideline card of the
structure chosen is shown beside them. Start hides the reference and any AI result and puts an
empty attempt into trame-slicer's Segment Editor; Submit shows the scores, the borders in words and
the overlay of too much (orange) and missed (blue); Show reference loads the reference; End round
gives the editor back. Each submission is stored in the practice history (practice.sqlite beside
the correction log, the trainee keyed with the site key). Everything else is the MRML logic's
``PracticeLogic``, which the Slicer panel calls too.
"""

from __future__ import annotations

import getpass
import logging

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.phantom import PhantomGrid
from DKOARSegmentationLib.serving.paths import resolve_inside
from DKOARSegmentationMRML.labelmap_history import LabelmapHistory
from DKOARSegmentationMRML.practice import PracticeLogic

from .guard import guarded

log = logging.getLogger("dkoar.station")

# the phantom's grids offered: the full-size CT, and a coarse one that renders quickly on a CPU
PHANTOM_SIZES = {"full size (512 x 512)": PhantomGrid(),
                 "quick (96 x 96, 2.6 mm pixels, 4 mm slices)": PhantomGrid(matrix=96, pixel_mm=2.6, slice_mm=4.0)}
POSITIONS = ("HFS", "FFS", "HFP", "FFP")
HISTORY_NAME = "practice.sqlite"  # beside the correction log


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment
        return ""


class PracticeControls:
    """The Practice panel's controls (a mixin of StationApp)."""

    def _init_practice(self) -> None:
        self.practice = PracticeLogic()
        state = self.state
        state.st_practice_source, state.st_practice_seed, state.st_practice_position = "phantom", 1, "HFS"
        state.st_practice_positions, state.st_practice_sizes = list(POSITIONS), list(PHANTOM_SIZES)
        state.st_practice_size = state.st_practice_sizes[-1]
        state.st_practice_reference, state.st_practice_unapproved = "", False
        state.st_practice_structures, state.st_practice_card = [], ""
        state.st_practice_trainee = _login()
        state.st_practice_running, state.st_practice_round, state.st_practice_edits = False, [], 0
        state.st_practice_feedback, state.st_practice_scores, state.st_practice_scored = "", [], False
        state.change("st_practice_structures")(self._on_practice_structures)

    @property
    def _practising(self) -> bool:
        return self.practice.round is not None and self.practice.round.running

    def _on_practice_structures(self, st_practice_structures=None, **_) -> None:
        """The guideline card of the structure chosen last."""
        names = st_practice_structures or []
        self.state.st_practice_card = self.practice.guidelineCard(names[-1]).html() if names else ""

    def _configure_practice(self) -> None:
        practice = self.practice
        practice.historyPath = str(self.options.log_path.parent / HISTORY_NAME)
        practice.trainee = str(self.state.st_practice_trainee or "")
        practice.siteKeyPath = str(self.options.site_key or "")
        practice.site = self.options.site

    # -- the round -------------------------------------------------------------------------------

    @guarded
    def start_practice(self) -> None:
        self._refuse_while_busy("practising")
        structures = list(self.state.st_practice_structures or [])
        if not structures:
            raise DKOARError("choose the structures to practise")
        self._configure_practice()
        self.practice.dicomDatabase = self.logic.dicomDatabase  # the open CT's files, for a reference RTSTRUCT
        if self.state.st_practice_source == "phantom":
            grid = PHANTOM_SIZES.get(self.state.st_practice_size)
            if grid is None:
                raise DKOARError("choose the phantom's size")
            self._close_case()
            self._remove_round_nodes()
            practice = self.practice.startPhantomRound(int(self.state.st_practice_seed or 1), structures,
                                                      self.state.st_practice_position, grid)
            self.ct_node = practice.volume_node
            display = self.slicer_app.display_manager
            display.show_volume_in_slice_background(self.ct_node)
            display.show_volume_in_slice_foreground(None)
            display.reset_views()
            self.set_window("Soft tissue")
            self.state.st_ct_label = f"Practice: {practice.case_label}"
        else:
            if self.options.data is None:
                raise DKOARError("the station was started without --data: there is no reference file to practise on")
            if self.ct_node is None:
                raise DKOARError("open the CT of the reference first (CT panel)")
            path = resolve_inside(str(self.state.st_practice_reference), {"data": self.options.data.resolve()})
            self._remove_round_nodes()
            practice = self.practice.startRoundFromFile(self.ct_node, str(path), structures,
                                                       bool(self.state.st_practice_unapproved))
            self.state.st_structures = []  # the AI result is hidden for the round
        self.editor.set_active_segmentation(practice.attempt_node, practice.volume_node)
        self.editor.set_active_segment_id(practice.structures[0])
        self.history = LabelmapHistory(practice.attempt_node, practice.volume_node)
        self.state.st_selected = practice.structures[0]
        self.state.st_practice_round = list(practice.structures)
        self.state.st_practice_running, self.state.st_practice_scored = True, False
        self.state.st_practice_feedback, self.state.st_practice_scores, self.state.st_practice_edits = "", [], 0
        self.say(f"Draw {', '.join(practice.structures)} with the Segment Editor; the reference and any AI result "
                 "are hidden. Submit when done.", "success")
        log.info("a practice round started (%s, %d structures)", practice.case_kind, len(practice.structures))

    def _remove_round_nodes(self) -> None:
        """The previous round's attempt, overlay and reference leave the scene with it."""
        previous = self.practice.round
        if previous is None:
            return
        scene = self.slicer_app.scene
        for node in (previous.attempt_node, previous.overlay_node, previous.reference_node):
            if node is not None and scene.IsNodePresent(node):
                scene.RemoveNode(node)
        self.practice.round = None

    def _note_practice_edit(self) -> None:
        if self._practising:
            with self.state:
                self.state.st_practice_edits = int(self.state.st_practice_edits or 0) + 1

    @guarded
    def practice_select(self, name: str) -> None:
        """Draw another structure of the round."""
        if not self._practising or name not in self.practice.round.structures:
            raise DKOARError("choose a structure of the round")
        self.editor.set_active_segment_id(name)
        self.state.st_selected = name

    @guarded
    def submit_practice(self) -> None:
        if not self._practising:
            raise DKOARError("start a practice round first")
        self._configure_practice()
        scores = self.practice.submit()
        practice = self.practice.round
        self.state.st_practice_scores = [score.as_json() for score in scores.values()]
        self.state.st_practice_feedback = "".join(score.html() for score in scores.values()) + \
            f"<p><small>{self.practice.overlayLegend()}</small></p>"
        self.state.st_practice_scored = True
        stored = "stored in the practice history" if practice.stored and not practice.store_error else \
            f"not stored: {practice.store_error or 'no practice history'}"
        self.say(f"Scored {len(scores)} structure(s), {stored}. Show the reference, or draw on and submit again.",
                 "success" if not practice.store_error else "warning")
        log.info("a practice attempt was scored (%d structures)", len(scores))

    @guarded
    def show_reference(self) -> None:
        self.practice.showReference()
        self.say("The reference is shown.", "success")

    @guarded
    def end_practice(self) -> None:
        if self.practice.round is None:
            raise DKOARError("start a practice round first")
        self.practice.endRound()
        self.state.st_practice_running = False
        if self.segmentation_node is not None:
            self.editor.set_active_segmentation(self.segmentation_node, self.ct_node)
            self.history = LabelmapHistory(self.segmentation_node, self.ct_node)
            self._refresh_structures()
        else:
            self.history = None
        self.say("Round ended.")
