"""The station's page: a module panel on the left, as in Slicer, and the Four-Up views.

The panel's sections follow the clinician's work: CT (the data folder's series, a path inside it,
window presets), Run (the structures by anatomical group, Apply/Cancel with progress, the model
card, an earlier run of the output folder), Structures (grouped by anatomy: colour, name, a flag
icon when the plausibility checks flag it, volume, visibility, opacity; a click selects the
structure and centres the views on it; 3D surfaces on request), Review first (the ranked places
where the model is least sure, a click goes there; Check again), Segment Editor (trame-slicer's
effects and their settings, without its own segment list: the structure list selects; undo/redo,
the live correction times, Finish) and Export. Elements the tests drive carry an ``id``. Keys as
in Slicer's Segment Editor: Ctrl+Z / Ctrl+Y undo and redo, Escape leaves the effect, 1-3 choose
Paint, Draw, Erase (typing in a text field is left alone).
"""

from __future__ import annotations

from types import SimpleNamespace

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v
from trame_slicer.app.ui import SegmentEditorUI

CSS = """
html { overflow-y: hidden; }
* { scroll-behavior: auto !important; }
.st-panel { font-size: 13px; }
.st-panel .v-expansion-panel-text__wrapper { padding: 6px 10px; }
.st-row { display: flex; align-items: center; gap: 6px; padding: 1px 2px; cursor: pointer; }
.st-row.selected { background: rgba(120, 160, 255, 0.25); }
.st-swatch { width: 14px; height: 14px; border-radius: 2px; border: 1px solid #888; flex: none; }
.st-name { flex: 1 1 auto; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.st-volume { width: 70px; text-align: right; color: #bbb; flex: none; }
.st-opacity { width: 70px; flex: none; }
.st-group { font-weight: 600; margin-top: 6px; color: #9cf; }
.st-table td, .st-table th { padding: 2px 6px !important; font-size: 12px; }
.st-demo { font-weight: 700; letter-spacing: 0.02em; }
.st-flag { flex: none; cursor: help; }
.st-review-row { display: flex; gap: 8px; padding: 2px 4px; cursor: pointer; border-radius: 3px; }
.st-review-row:hover { background: rgba(120, 160, 255, 0.18); }
.st-card { max-height: 260px; overflow-y: auto; font-size: 12px; background: rgba(255,255,255,0.04);
           padding: 4px 8px; border-radius: 4px; }
.st-card h3 { font-size: 14px; margin: 2px 0 4px; } .st-card td { padding: 1px 4px; vertical-align: top; }
.st-feedback { font-size: 13px; } .st-feedback ul { margin-left: 18px; }
.st-rank { width: 18px; text-align: right; color: #9cf; flex: none; }
/* trame-slicer's editor without its own segment list: the structure list above selects */
.st-editor { height: 300px; }
.st-editor > div > div > .v-card:first-child, .st-editor > div > div > hr:first-of-type { display: none; }
.st-editor > div > div > .v-card { height: 100% !important; }
"""

# Slicer's Segment Editor keys (see the module docstring), sent to StationApp.key
KEYS_SCRIPT = """
window.dkoarStationKeys = true;
window.addEventListener("keydown", (e) => {
  const t = e.target;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) { return; }
  if (!window.trame || !window.trame.trigger) { return; }
  const k = e.key;
  if ((e.ctrlKey || e.metaKey) && (k === 'z' || k === 'Z')) {
    e.preventDefault(); window.trame.trigger(e.shiftKey ? '%(redo)s' : '%(undo)s');
  } else if ((e.ctrlKey || e.metaKey) && (k === 'y' || k === 'Y')) {
    e.preventDefault(); window.trame.trigger('%(redo)s');
  } else if (!e.ctrlKey && !e.metaKey && !e.altKey && ['Escape', '1', '2', '3'].includes(k)) {
    window.trame.trigger('%(key)s', [k]);
  }
});
"""


def build_page(app) -> SimpleNamespace:
    """Build the page of ``app`` (a StationApp); returns the parts the app wires further."""
    ctrl = app.server.controller
    parts = SimpleNamespace()
    with VAppLayout(app.server, theme="dark") as layout:
        client.Style(CSS)
        client.Script(KEYS_SCRIPT % {"undo": ctrl.trigger_name(app.undo), "redo": ctrl.trigger_name(app.redo),
                                     "key": ctrl.trigger_name(app.key)})
        with v.VAppBar(density="compact", color="#2b2b2b"):
            v.VToolbarTitle("DKOAR Segmentation station", style="flex: none;")
            html.Span("{{ st_ct_label }}", classes="ml-4 text-grey-lighten-1", id="st-ct-label")
            v.VSpacer()
            v.VChip("Demo model: not for clinical use", v_if=("st_demo",), color="red", variant="flat",
                    classes="st-demo mr-3", id="st-demo-banner", prepend_icon="mdi-alert")
            v.VProgressCircular(indeterminate=True, size=20, v_show=("st_busy || st_running",), classes="mr-3")
        with v.VNavigationDrawer(permanent=True, width=440, classes="st-panel"):
            v.VAlert(text=("st_message",), v_show=("st_message",), type=("st_message_kind",), density="compact",
                     variant="tonal", closable=True, classes="ma-2", id="st-message",
                     click_close="st_message = ''")
            panels = ["ct", "run", "structures", "review", "editor", "export", "practice"]
            with v.VExpansionPanels(multiple=True, model_value=(panels,),
                                    variant="accordion"):
                _ct_panel(app)
                _run_panel(app)
                _structures_panel(app)
                _review_panel(app)
                parts.segment_editor = _editor_panel(app)
                _export_panel(app)
                _practice_panel(app)
        with v.VMain(), html.Div(style="height: calc(100vh - 48px); width: 100%; display: flex;"):
            app.layout_manager.initialize_layout_grid(layout)
        _model_card_dialog()
    parts.layout = layout
    return parts


def _panel(title: str, value: str):
    panel = v.VExpansionPanel(value=value)
    with panel:
        v.VExpansionPanelTitle(title, classes="font-weight-bold")
    return panel


def _ct_panel(app) -> None:
    with _panel("CT", "ct"), v.VExpansionPanelText():
        with v.VTable(density="compact", classes="st-table", v_if=("st_series.length",), id="st-series"):
            with html.Thead(), html.Tr():
                for heading in ("", "Modality", "Slices", "Thickness", "Description"):
                    html.Th(heading)
            with html.Tbody(), html.Tr(v_for="row in st_series", key="row.index"):
                with html.Td():
                    v.VBtn("Open", size="x-small", variant="tonal", disabled=("!row.openable || st_busy",),
                           click=(app.open_series, "[row.index]"), id=("`st-open-${row.index}`",))
                html.Td("{{ row.modality }}")
                html.Td("{{ row.slices }}")
                html.Td("{{ row.thickness }}")
                html.Td("{{ row.description }}<span v-if='row.note' class='text-orange'> ({{ row.note }})</span>")
        html.Div("No series found in the data folder.", v_if=("st_data && !st_series.length",), classes="text-grey")
        with html.Div(classes="d-flex align-center mt-2", v_if=("st_data",)):
            v.VTextField(v_model=("st_open_path",), label="Folder or file inside the data folder", density="compact",
                         hide_details=True, id="st-open-path", keyup_enter=(app.open_path, "[st_open_path]"))
            v.VBtn("Open", classes="ml-2", variant="tonal", click=(app.open_path, "[st_open_path]"),
                   id="st-open-path-btn", disabled=("st_busy",))
        with html.Div(classes="mt-2 d-flex align-center flex-wrap", v_if=("st_ct_label",)):
            html.Span("Window:", classes="mr-2")
            with v.VBtnToggle(model_value=("st_window",), density="compact", variant="outlined", divided=True,
                              mandatory=True):
                v.VBtn("{{ preset }}", v_for="preset in st_presets", key="preset", value=("preset",), size="small",
                       click=(app.set_window, "[preset]"), id=("`st-window-${preset.replace(/ /g, '')}`",))


def _run_panel(app) -> None:
    with _panel("Run", "run"), v.VExpansionPanelText():
        with v.VExpansionPanels(variant="accordion", classes="mb-2"):
            with v.VExpansionPanel(v_for="g in st_groups", key="g.group"):
                with v.VExpansionPanelTitle():
                    v.VCheckbox(
                        model_value=("g.members.every(s => st_run_structures.includes(s))",),
                        indeterminate=("g.members.some(s => st_run_structures.includes(s)) && "
                                       "!g.members.every(s => st_run_structures.includes(s))",),
                        click=("st_run_structures = g.members.every(s => st_run_structures.includes(s)) ? "
                               "st_run_structures.filter(s => !g.members.includes(s)) : "
                               "[...new Set([...st_run_structures, ...g.members])]; $event.stopPropagation()"),
                        density="compact", hide_details=True, label=("g.group",), style="flex: none;")
                    html.Span("{{ g.members.filter(s => st_run_structures.includes(s)).length }}/"
                              "{{ g.members.length }}", classes="ml-2 text-grey")
                with v.VExpansionPanelText():
                    v.VCheckbox(v_for="s in g.members", key="s", v_model=("st_run_structures",), value=("s",),
                                label=("s",), density="compact", hide_details=True)
        with html.Div(classes="d-flex align-center"):
            v.VBtn("{{ st_running ? 'Cancel' : 'Apply' }}", color=("st_running ? 'orange' : 'primary'",),
                   click=app.apply, id="st-apply", disabled=("!st_ct_label || (st_busy && !st_running)",))
            v.VBtn("Model card", variant="text", classes="ml-2", click=app.show_model_card, id="st-model-card")
            html.Span("{{ st_run_structures.length }} structures", classes="ml-auto text-grey")
        with html.Div(classes="d-flex align-center mt-2", v_if=("st_runs.length",)):
            v.VSelect(v_model=("st_open_run",), items=("st_runs",), label="An earlier run of the output folder",
                      density="compact", hide_details=True, id="st-runs")
            v.VBtn("Open run", classes="ml-2", variant="tonal", click=(app.open_run, "[st_open_run]"),
                   id="st-open-run", disabled=("!st_ct_label || st_busy || st_running",))
        with html.Div(v_show=("st_running",), classes="mt-2", id="st-progress"):
            v.VProgressLinear(model_value=("st_progress",), height=14, color="primary")
            html.Div("{{ st_stage }} ({{ st_progress }} %)", classes="text-grey")


def _structures_panel(app) -> None:
    with _panel("Structures", "structures"), v.VExpansionPanelText(id="st-structures"):
        html.Div("Run the model to see the structures.", v_if=("!st_structures.length",), classes="text-grey")
        v.VSwitch(v_if=("st_structures.length",), model_value=("st_show3d",), label="Show 3D surfaces",
                  density="compact", hide_details=True, color="primary", id="st-show3d",
                  update_modelValue=(app.show_surfaces, "[$event]"))
        with html.Div(v_for="g in st_structures", key="g.group"):
            html.Div("{{ g.group }}", classes="st-group")
            with html.Div(v_for="row in g.rows", key="row.segment_id",
                          classes=("['st-row', row.segment_id === st_selected ? 'selected' : '']",),
                          id=("`st-structure-${row.segment_id}`",), title=("row.terminology",)):
                html.Div(classes="st-swatch", style=("{ background: row.color }",))
                html.Span("{{ row.name }}", classes="st-name", click=(app.select_structure, "[row.segment_id]"))
                v.VIcon(icon=("row.flag_icon",), v_if=("row.flag",), color=("row.flag_color",), size="small",
                        classes="st-flag", title=("row.flag_text",), id=("`st-flag-${row.segment_id}`",))
                html.Span("{{ row.volume_ml.toFixed(1) }} ml", classes="st-volume")
                v.VBtn(icon=("row.visible ? 'mdi-eye' : 'mdi-eye-off'",), size="x-small", variant="text",
                       click=(app.toggle_visible, "[row.segment_id]"))
                v.VSlider(model_value=("row.opacity",), min=0, max=1, step=0.1, density="compact", hide_details=True,
                          classes="st-opacity", end=(app.set_opacity, "[row.segment_id, $event]"))


def _review_panel(app) -> None:
    with _panel("Review first", "review"), v.VExpansionPanelText(id="st-review"):
        html.Div("Run the model to see where to look first.", v_if=("!st_structures.length",), classes="text-grey")
        html.Div("{{ st_flag_summary }}", v_if=("st_flag_summary",), id="st-flag-summary", classes="mb-1")
        html.Div("Where the model is least sure (click to go there):", v_if=("st_review.length",),
                 classes="text-grey")
        with html.Div(v_for="e in st_review", key="e.rank", classes="st-review-row", title=("e.text",),
                      id=("`st-review-${e.rank}`",), click=(app.jump_to_review, "[e.index]")):
            html.Span("{{ e.rank }}.", classes="st-rank")
            html.Span("{{ e.structure }}", classes="st-name")
            html.Span("slices {{ e.slices }}", classes="text-grey")
        v.VBtn("Check again", size="small", variant="tonal", classes="mt-2", click=app.check_again,
               v_if=("st_structures.length",), id="st-check-again",
               title="Run the plausibility checks on the segmentation as corrected so far")


def _editor_panel(app) -> SegmentEditorUI:
    with _panel("Segment Editor", "editor"), v.VExpansionPanelText():
        with html.Div(classes="d-flex align-center mb-1"):
            html.Span("{{ st_correcting ? 'Correcting: edits are timed' : 'Not timing' }}",
                      classes=("st_correcting ? 'text-green' : 'text-grey'",), id="st-correcting")
            v.VSpacer()
            v.VBtn("Undo", size="small", variant="text", prepend_icon="mdi-undo", click=app.undo, id="st-undo")
            v.VBtn("Redo", size="small", variant="text", prepend_icon="mdi-redo", click=app.redo, id="st-redo")
        html.Div("Editing <b>{{ st_selected }}</b>{{ st_effect ? ' with ' + st_effect : '' }}",
                 v_if=("st_selected",), classes="mb-1", id="st-editing")
        with html.Div(classes="st-editor"):
            editor = SegmentEditorUI()
        with v.VTable(density="compact", classes="st-table mt-2", v_if=("st_times.length",), id="st-times"):
            with html.Thead(), html.Tr():
                for heading in ("Structure", "Active s", "Edits"):
                    html.Th(heading)
            with html.Tbody(), html.Tr(v_for="t in st_times", key="t.name"):
                html.Td("{{ t.name }}{{ t.changed ? ' *' : '' }}")
                html.Td("{{ t.active_s.toFixed(1) }}")
                html.Td("{{ t.edits }}")
        with html.Div(classes="d-flex align-center mt-2"):
            v.VBtn("Finish", color="green", click=app.finish, disabled=("!st_correcting",), id="st-finish")
            v.VBtn("Start correcting", variant="text", classes="ml-2", click=app.start_correcting,
                   v_if=("!st_correcting && st_structures.length",), id="st-start-correcting")
        html.Div("{{ st_summary }}", v_if=("st_summary",), classes="mt-1 text-green", id="st-summary")
    return editor


def _export_panel(app) -> None:
    ctrl = app.server.controller
    with _panel("Export", "export"), v.VExpansionPanelText():
        with html.Div(v_for="kind in st_export_kinds", key="kind", classes="d-flex align-center mb-1"):
            v.VBtn("Export {{ kind }}", size="small", variant="tonal", click=(app.export, "[kind]"),
                   disabled=("!st_structures.length || st_correcting",),
                   id=("`st-export-${kind.replace(/[ .]/g, '')}`",))
            v.VBtn("Download {{ st_exports[kind].file }}", v_if=("st_exports[kind]",), size="small", variant="text",
                   prepend_icon="mdi-download", classes="ml-2",
                   id=("`st-download-${kind.replace(/[ .]/g, '')}`",),
                   click=(f"utils.download(st_exports[kind].file, "
                          f"trigger('{ctrl.trigger_name(app.download)}', [kind]), 'application/octet-stream')"))
        html.Div("Exports go into time-stamped folders of the output folder.", classes="text-grey")


def _practice_panel(app) -> None:
    with _panel("Practice (trainee mode)", "practice"), v.VExpansionPanelText(id="st-practice"):
        with v.VBtnToggle(v_model=("st_practice_source",), density="compact", variant="outlined", divided=True,
                          mandatory=True, disabled=("st_practice_running",), classes="mb-2"):
            v.VBtn("Phantom", value="phantom", size="small", id="st-practice-phantom")
            v.VBtn("Open CT + reference file", value="file", size="small", id="st-practice-file",
                   disabled=("!st_data",))
        with html.Div(v_if=("st_practice_source === 'phantom'",), classes="d-flex align-center ga-2"):
            v.VTextField(v_model_number=("st_practice_seed",), type="number", label="Seed", density="compact",
                         hide_details=True, style="max-width: 80px;", id="st-practice-seed")
            v.VSelect(v_model=("st_practice_position",), items=("st_practice_positions",), label="Position",
                      density="compact", hide_details=True, style="max-width: 120px; min-width: 110px;")
            v.VSelect(v_model=("st_practice_size",), items=("st_practice_sizes",), label="Size", density="compact",
                      hide_details=True)
        with html.Div(v_if=("st_practice_source === 'file'",)):
            v.VTextField(v_model=("st_practice_reference",), density="compact", hide_details=True,
                         label="Reference inside the data folder (approved RTSTRUCT or label map)",
                         id="st-practice-reference")
            v.VCheckbox(v_model=("st_practice_unapproved",), label="Allow an unapproved RTSTRUCT", density="compact",
                        hide_details=True)
        v.VSelect(v_model=("st_practice_structures",), items=("st_run_structures",), multiple=True, chips=True,
                  label="Structures to practise", density="compact", hide_details=True, classes="mt-2",
                  disabled=("st_practice_running",), id="st-practice-structures")
        v.VTextField(v_model=("st_practice_trainee",), label="Trainee (stored keyed, never as written)",
                     density="compact", hide_details=True, classes="mt-2", disabled=("st_practice_running",))
        html.Div(v_html=("st_practice_card",), v_if=("st_practice_card",), classes="st-card mt-2",
                 id="st-practice-card")
        with html.Div(classes="d-flex align-center flex-wrap ga-2 mt-2"):
            v.VBtn("Start", color="primary", size="small", click=app.start_practice, id="st-practice-start",
                   disabled=("st_practice_running || st_busy",))
            v.VBtn("Submit", color="green", size="small", click=app.submit_practice, id="st-practice-submit",
                   disabled=("!st_practice_running",))
            v.VBtn("Show reference", size="small", variant="tonal", click=app.show_reference,
                   id="st-practice-reference-btn", disabled=("!st_practice_scored",))
            v.VBtn("End round", size="small", variant="text", click=app.end_practice, id="st-practice-end",
                   disabled=("!st_practice_running",))
        with html.Div(v_if=("st_practice_round.length",), classes="mt-2"):
            html.Span("Drawing: ", classes="text-grey")
            v.VChip("{{ name }}", v_for="name in st_practice_round", key="name", size="small", classes="mr-1",
                    color=("name === st_selected ? 'primary' : ''",), click=(app.practice_select, "[name]"))
        html.Div(v_html=("st_practice_feedback",), v_if=("st_practice_feedback",), classes="st-feedback mt-2",
                 id="st-practice-feedback")


def _model_card_dialog() -> None:
    with v.VDialog(v_model=("st_card_visible",), max_width=760), v.VCard():
        v.VCardTitle("Model card")
        with v.VCardText(style="max-height: 70vh; overflow-y: auto;"):
            html.Pre("{{ st_card }}", style="white-space: pre-wrap; font-size: 12px;", id="st-card")
        with v.VCardActions():
            v.VSpacer()
            v.VBtn("Close", click="st_card_visible = false")
