"""The station: trame-slicer's Slicer application and views, the logic every front end calls, and
what the page's controls for the CT, the run and the exports do (those of the structure list and
the Segment Editor are in ``editing``). Every control goes through ``guard.guarded``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from trame.app import TrameApp, asynchronous
from trame_slicer.app.logic import SegmentEditorLogic
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from vtkmodules.vtkCommonCore import vtkObject

from DKOARSegmentationLib.atomic import new_folder_path
from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.pipeline.background import launch_child
from DKOARSegmentationLib.serving.paths import outside_files, resolve_inside
from DKOARSegmentationMRML import review
from DKOARSegmentationMRML.application import bind_slicer_namespace
from DKOARSegmentationMRML.labelmap_history import LabelmapHistory
from DKOARSegmentationMRML.logic import EXPORTS, SegmentationLogic

from .editing import EditingControls
from .guard import guarded
from .guidance import GuidanceControls
from .practice import PracticeControls

log = logging.getLogger("dkoar.station")

LAYOUT = "Four-Up"
STILL_QUALITY = 90  # trame-rca's JPEG quality of a still image
OTHER_VIEWS_FPS = 2.0  # frames a second of the views the mouse is not over
POLL_S = 0.1  # how often the child's output is read while a run goes on


def four_up() -> Layout:
    """Slicer's Four-Up layout: axial and 3D above, sagittal and coronal below."""
    return Layout(LayoutDirection.Vertical, [
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()]),
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.sagittal_view(),
                                            ViewLayoutDefinition.coronal_view()]),
    ])


class StationApp(EditingControls, GuidanceControls, PracticeControls, TrameApp):
    def __init__(self, options, server=None):
        super().__init__(server)
        self.options = options
        self.slicer_app = SlicerApp()
        # VTK's warnings (deprecated events trame-slicer observes) are noise in the station's log
        vtkObject.GlobalWarningDisplayOff()
        scene = self.slicer_app.scene
        self._restore_namespace = bind_slicer_namespace(scene, self.slicer_app.app_logic)
        # Rendering is on the CPU here: one render per change, at the still quality (trame-rca's
        # default renders every change twice, a rough image then a fine one), and the views the mouse
        # is not over follow at a few frames a second, so that the one being painted keeps up
        register_rca_factories(self.slicer_app.view_manager, self.server, interactive_quality=STILL_QUALITY,
                               blur_fps=OTHER_VIEWS_FPS)
        self.layout_manager = LayoutManager(scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict({LAYOUT: four_up(), **LayoutManager.default_grid_configuration()})
        self.layout_manager.set_layout(LAYOUT)
        self.editor = self.slicer_app.segmentation_editor
        self.editor_logic = SegmentEditorLogic(self.server, self.slicer_app)  # trame-slicer's effects
        # undo and redo are the MRML logic's (labelmap_history): trame-slicer's own copies the whole
        # segmentation twice per stroke and takes seconds to free a copy of a full-size CT's structures
        self.editor.set_undo_stack(None)
        self.history = None
        self._history_due = False
        # the child runs the pipeline in this environment's Python (torch is here)
        self.logic = SegmentationLogic(launcher=launch_child, python=sys.executable)
        self.ct_node = None
        self.segmentation_node = None
        self._scan = None
        self._series = []
        self._volumes: dict[str, float] = {}
        self._volumes_due: float | None = None
        self._init_state()
        self._init_practice()

        from .page import build_page

        self.page = build_page(self)
        self.editor_logic.set_ui(self.page.segment_editor)
        self.editor.active_segment_id_changed.connect(self._on_segment_selected)
        self.editor.active_effect_name_changed.connect(self._on_effect_chosen)
        self.editor.segmentation_modified.connect(self._on_segmentation_modified)
        self.server.controller.on_server_ready.add(self._on_ready)
        self.server.controller.on_client_connected.add(self._render_views)

    # -- state ------------------------------------------------------------------------------------

    def _init_state(self) -> None:
        state = self.state
        state.trame__title = "DKOAR station"
        state.st_message, state.st_message_kind = "", "info"
        state.st_busy = False
        state.st_series, state.st_open_path, state.st_ct_label = [], "", ""
        state.st_data = bool(self.options.data)
        state.st_window = ""
        state.st_presets = list(review.WINDOW_PRESETS)
        groups = SegmentationLogic.structureGroups()
        state.st_groups = [{"group": group, "members": members} for group, members in groups.items()]
        state.st_run_structures = SegmentationLogic.defaultStructures().split(",")
        state.st_running, state.st_progress, state.st_stage = False, 0, ""
        model = str(self.options.model or "")
        state.st_demo = SegmentationLogic.isDemoModel(model)
        state.st_card_visible, state.st_card = False, ""
        state.st_structures, state.st_selected, state.st_show3d = [], "", False
        state.st_correcting, state.st_times, state.st_edits, state.st_summary = False, [], 0, ""
        state.st_exports, state.st_effect = {}, ""
        state.st_export_kinds = list(EXPORTS)
        state.st_review, state.st_flag_summary, state.st_runs, state.st_open_run = [], "", [], ""

    def say(self, text: str, kind: str = "info") -> None:
        """The page's one message line (errors in red)."""
        self.state.st_message, self.state.st_message_kind = text, kind

    # -- start ------------------------------------------------------------------------------------

    @guarded
    def _on_ready(self, **_) -> None:
        if self.options.data is not None:
            self._scan_data()
        self._scan_runs()
        if self.options.ct is not None:
            asynchronous.create_task(self.open_start_ct())

    def _render_views(self, **_) -> None:
        """A page that (re)connects gets fresh images of every view."""
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    def _scan_data(self) -> None:
        from DKOARSegmentationLib.input.series_scan import scan_dicom_folder
        from DKOARSegmentationLib.input.series_table import series_table

        self._scan = scan_dicom_folder(self.options.data)
        self._series, self.state.st_series = series_table(self._scan, self.options.data)
        log.info("the data folder holds %d series", len(self._series))

    # -- opening a CT -----------------------------------------------------------------------------

    def _refuse_while_busy(self, doing: str = "opening another CT") -> None:
        if self.logic.processRunning:
            raise DKOARError(f"the model is running: cancel it before {doing}")
        if self._correcting:
            raise DKOARError(f"correcting has started: press Finish before {doing}")
        if self._practising:
            raise DKOARError("a practice round is going on: submit it or end it first")

    @guarded
    async def open_series(self, index) -> None:
        """Open a series of the data folder's table (by its row)."""
        from DKOARSegmentationLib.input.ct_loader import load_series
        from DKOARSegmentationMRML.dicom_source import DicomFolderIndex

        self._refuse_while_busy()
        if not isinstance(index, int) or not 0 <= index < len(self._series):
            raise DKOARError("choose a series of the table")
        series = self._series[index]
        if outside_files(self.options.data, series.files):
            raise DKOARError(f"series {index + 1} has files outside the data folder (symbolic links); "
                             "it cannot be opened")
        with self.state:
            self.say(f"Reading series {index + 1}...")
        ct = await asyncio.to_thread(load_series, series, f"series {index + 1}")
        self._show_ct(ct, f"Series {index + 1}: {series.description or series.modality}",
                      DicomFolderIndex(scan=self._scan))
        log.info("opened series %d (%s, %d slices)", index + 1, series.modality, ct.shape[0])

    @guarded
    async def open_path(self, text=None) -> None:
        """Open a folder or file the browser names: only inside the data folder."""
        if self.options.data is None:
            raise DKOARError("the station was started without --data: there is no folder to open files from")
        path = resolve_inside(str(text if text is not None else self.state.st_open_path),
                              {"data": self.options.data.resolve()})
        await self._open_ct_path(str(path))

    @guarded
    async def open_start_ct(self) -> None:
        """The CT of --ct (the user's own command line names it, not the browser)."""
        await self._open_ct_path(str(self.options.ct.resolve()))

    async def _open_ct_path(self, path: str) -> None:
        from DKOARSegmentationLib.input.ct_loader import load_ct
        from DKOARSegmentationLib.input.series_scan import scan_dicom_file
        from DKOARSegmentationMRML.dicom_source import DicomFolderIndex

        self._refuse_while_busy()
        with self.state:
            self.say("Reading the CT...")
        ct = await asyncio.to_thread(load_ct, path)
        lookup = None
        if ct.dicom is not None:
            source = Path(path)
            lookup = await asyncio.to_thread(
                lambda: DicomFolderIndex(source) if source.is_dir() else DicomFolderIndex(scan=scan_dicom_file(source)))
        self._show_ct(ct, "CT" + (f": {ct.dicom.header.get('SeriesDescription', '')}" if ct.dicom else ""), lookup)
        log.info("opened a CT (%d slices, %s)", ct.shape[0], "DICOM" if ct.dicom else "image file")

    def _show_ct(self, ct, label: str, lookup) -> None:
        with self.state:
            self._close_case()
            self.ct_node = self.logic.addCTVolume(ct, "CT", lookup)
            # the slice views only, as Slicer shows a CT it loads: a volume rendering in the 3D view
            # costs seconds per frame on a CPU (the 3D view shows the structures' surfaces on request)
            display = self.slicer_app.display_manager
            display.show_volume_in_slice_background(self.ct_node)
            display.show_volume_in_slice_foreground(None)
            display.reset_views()
            self.set_window("Soft tissue")
            self.state.st_ct_label = label.strip(": ")
            self.say(f"{label.strip(': ')} is open: {ct.shape[2]} x {ct.shape[1]} pixels, {ct.shape[0]} slices. "
                     "Choose the structures and press Apply.", "success")

    def _close_case(self) -> None:
        """Remove the previous CT and its structures from the scene."""
        scene = self.slicer_app.scene
        for node in (self.segmentation_node, self.ct_node):
            if node is not None and scene.IsNodePresent(node):
                scene.RemoveNode(node)
        self.segmentation_node = self.ct_node = self.history = None
        self._volumes = {}
        self.state.st_structures, self.state.st_times, self.state.st_exports = [], [], {}
        self.state.st_summary, self.state.st_selected = "", ""
        self._clear_review()

    @guarded
    def set_window(self, preset: str) -> None:
        if self.ct_node is None:
            raise DKOARError("open a CT first")
        review.apply_window_preset(self.ct_node, preset)
        self.state.st_window = preset

    # -- running the model ------------------------------------------------------------------------

    @guarded
    def show_model_card(self) -> None:
        self.state.st_card = self.logic.modelCard(str(self.options.model or ""))
        self.state.st_card_visible = True

    @guarded
    def apply(self) -> None:
        """Apply starts the run; while it runs the same button cancels it."""
        if self.logic.processRunning:
            self.logic.cancelSegmentation()
            self.say("Cancelling...")
            return
        if self.ct_node is None:
            raise DKOARError("open a CT first")
        if self._correcting:
            raise DKOARError("correcting has started: press Finish before running the model again")
        if self._practising:
            raise DKOARError("a practice round is going on: end it first")
        chosen = [name for name in self.state.st_run_structures]
        if not chosen:
            raise DKOARError("choose at least one structure")
        folder = new_folder_path(self.options.out, "run")
        process = self.logic.startSegmentationProcess(
            self.ct_node, str(folder), str(self.options.model or ""), self.options.device,
            onProgress=self._on_progress, onCompleted=self._on_completed, structures=",".join(chosen))
        self._run_started = time.monotonic()
        self.state.st_running, self.state.st_progress, self.state.st_stage = True, 0, "starting"
        self.say(f"Running the model on {len(chosen)} structures...")
        log.info("the model runs on %d structures", len(chosen))
        asynchronous.create_task(self._watch(process))

    async def _watch(self, process) -> None:
        """Hand the child's output to the logic's callbacks, on the server's thread."""
        running = True
        while running:
            await asyncio.sleep(POLL_S)
            with self.state:
                running = process.poll()

    def _on_progress(self, stage: str, fraction: float, message: str) -> None:
        self.state.st_progress = int(round(100 * fraction))
        self.state.st_stage = message or stage

    def _on_completed(self, node, record, error) -> None:
        self.state.st_running = False
        if error:
            self.say(error if "cancelled" not in error else "The run was cancelled; nothing was loaded.", "error")
            log.info("the run ended without a result (%s)",
                     "cancelled" if "cancelled" in error else "refused or failed")
            return
        self._show_result(node)
        self._scan_runs()
        seconds = time.monotonic() - self._run_started
        log.info("the run finished in %.1f s", seconds)
        notes = " ".join(f"Note: {w}" for w in record.get("warnings", []))
        self.say(f"{len(record.get('outputs', {}))} outputs written in {seconds:.0f} s; the structures are shown. "
                 f"Correcting has started: edits are timed. {notes}".strip(), "success")

    def _show_result(self, node) -> None:
        scene = self.slicer_app.scene
        if self.segmentation_node is not None and scene.IsNodePresent(self.segmentation_node):
            scene.RemoveNode(self.segmentation_node)
        self.segmentation_node = node
        self.editor.set_active_segmentation(node, self.ct_node)
        self.editor.set_surface_representation_enabled(bool(self.state.st_show3d))
        self.history = LabelmapHistory(node, self.ct_node)
        self._volumes = review.structure_volumes(node, self.ct_node)
        self._start_correcting()
        self._refresh_structures()

    # -- export -----------------------------------------------------------------------------------

    @guarded
    def export(self, kind: str) -> None:
        """Write ``kind`` into a new folder of the output folder; the page then offers the download."""
        self._require_result()
        if kind not in EXPORTS:
            raise DKOARError(f"unknown export {kind!r}")
        if self._correcting:
            raise DKOARError("press Finish first: the export marks what Finish found corrected")
        path = self.logic.exportToNewFolder(kind, self.segmentation_node, self.ct_node, str(self.options.out))
        relative = path.resolve().relative_to(self.options.out.resolve())
        self.state.st_exports = {**self.state.st_exports, kind: {"file": path.name, "folder": str(relative.parent)}}
        self.say(f"{kind} written to {relative.parent}/ in the output folder.", "success")
        log.info("exported %s", kind)

    @guarded
    async def download(self, kind: str):
        """The bytes of an export for the browser's download (only files of the output folder)."""
        entry = self.state.st_exports.get(kind)
        if not entry:
            raise DKOARError(f"export the {kind} first")
        path = resolve_inside(str(Path(entry["folder"]) / entry["file"]), {"output": self.options.out.resolve()})
        return self.server.protocol.addAttachment(path.read_bytes())

    # -- end --------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.logic.shutdown()
        self._restore_namespace()
