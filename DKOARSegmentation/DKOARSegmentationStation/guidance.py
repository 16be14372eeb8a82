"""The review guidance in the station (a mixin of StationApp): a flag icon beside each flagged
structure (the worst severity's colour, the flags' sentences as its tooltip), the ranked "Review
first" list (a click selects the structure and centres the views on its uncertain slices), "Check
again" on the segmentation as corrected, and an earlier run of the output folder opened again with
its guidance. The guidance and the checks are the MRML logic's (``review_guidance``), as in the
Slicer panel's review section.
"""

from __future__ import annotations

import logging

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.serving.paths import resolve_inside

from .guard import guarded

log = logging.getLogger("dkoar.station")

# the page's icon and colour of a flag's worst severity (Material Design icons, as trame's Vuetify)
FLAG_LOOK = {"error": ("mdi-alert-octagon", "#ef5350"), "warning": ("mdi-alert", "#ffa726"),
             "info": ("mdi-information", "#64b5f6")}
RUN_FILES = ("run.json", "segmentation.seg.nrrd")  # what makes a folder of the output folder a run


class GuidanceControls:
    """Flags beside the structures, the review list, Check again, earlier runs (a mixin of StationApp)."""

    def _flagged_rows(self, rows: list[dict]) -> list[dict]:
        """The structure list's rows with their flag (empty when the structure has none)."""
        flags = self.logic.structureFlags(self.segmentation_node)
        for row in rows:
            shown = flags.get(row["name"])
            icon, colour = FLAG_LOOK[shown["severity"]] if shown else ("", "")
            row.update(flag=shown["severity"] if shown else "", flag_text=shown["text"] if shown else "",
                       flag_icon=icon, flag_color=colour)
        self._show_review(len(flags))
        return rows

    def _show_review(self, flagged: int) -> None:
        entries = self.logic.reviewEntries(self.segmentation_node)
        self.state.st_review = [{"index": n, "rank": e["rank"], "structure": e["structure"],
                                 "slices": f"{e['first_slice'] + 1}-{e['last_slice'] + 1}", "text": e["text"]}
                                for n, e in enumerate(entries)]
        self.state.st_flag_summary = (f"{flagged} structure(s) flagged by the plausibility checks." if flagged
                                      else "No plausibility flag.")

    def _clear_review(self) -> None:
        self.state.st_review, self.state.st_flag_summary = [], ""

    @guarded
    def jump_to_review(self, index) -> None:
        """Select the entry's structure and centre every slice view on its uncertain slices."""
        self._require_result()
        entries = self.logic.reviewEntries(self.segmentation_node)
        if not isinstance(index, int) or not 0 <= index < len(entries):
            raise DKOARError("choose an entry of the review list")
        entry = entries[index]
        segment_id = self._segment_id_named(entry["structure"])
        if segment_id:
            self.editor.set_active_segment_id(segment_id)
            self.state.st_selected = segment_id
        self.logic.jumpToReviewEntry(entry)
        self.say(f"Review {entry['structure']}, slices {entry['first_slice'] + 1}-{entry['last_slice'] + 1}: "
                 "the views are centred there.")

    def _segment_id_named(self, name: str) -> str:
        segmentation = self.segmentation_node.GetSegmentation()
        return segmentation.GetSegmentIdBySegmentName(name) or ""

    @guarded
    def check_again(self) -> None:
        """The plausibility checks on the segmentation as corrected so far."""
        self._require_result()
        flags = self.logic.checkAgain(self.segmentation_node, self.ct_node)
        self._refresh_structures()
        names = sorted({f.structure for f in flags})
        self.say(f"Checked again: {len(names)} structure(s) flagged" + (f" ({', '.join(names)})." if names else "."),
                 "warning" if names else "success")
        log.info("checked again: %d structures flagged", len(names))

    # -- earlier runs ----------------------------------------------------------------------------

    def _scan_runs(self) -> None:
        """The output folder's runs (newest first), for the Run panel's list."""
        out = self.options.out
        names = sorted((p.name for p in out.iterdir() if p.is_dir() and all((p / f).is_file() for f in RUN_FILES)),
                       reverse=True) if out.is_dir() else []
        self.state.st_runs = names
        if self.state.st_open_run not in names:
            self.state.st_open_run = names[0] if names else ""

    @guarded
    def open_run(self, name=None) -> None:
        """Open an earlier run of the output folder again on the open CT, with its guidance."""
        self._refuse_while_busy("opening a run")
        if self.ct_node is None:
            raise DKOARError("open the CT the run was made on first")
        folder = resolve_inside(str(name if name is not None else self.state.st_open_run),
                                {"output": self.options.out.resolve()})
        node = self.logic.loadRunFolder(str(folder), self.ct_node)
        self._show_result(node)
        flagged = sum(1 for group in self.state.st_structures for row in group["rows"] if row["flag"])
        self.say(f"Run {folder.name} is open: {flagged} structure(s) flagged, {len(self.state.st_review)} "
                 "place(s) to review first. Correcting has started: edits are timed.", "success")
        log.info("an earlier run was opened again")
