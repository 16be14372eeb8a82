"""What a front end's review and correction controls call, on a real MRML scene (slicer-core):
CT window presets, the structure table, visibility, opacity, jumping to a structure, a CT added by
the logic from a DICOM folder, and an editor without a Segment Editor node reporting its selection
(the browser station's trame-slicer editor). Runs on slicer-core 5.12 here, and on the station's
5.11 through Testing/test_station_environment.py."""

from __future__ import annotations

import numpy as np
import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from DKOARSegmentationMRML import review
from Testing.test_slicer_mrml import (  # noqa: F401, F811 (the fixtures of the MRML tests, shared)
    TINY_GRID,
    ListSink,
    _background_block,
    _editor,
    _grow,
    _paint,
    core,
    loaded,
    slice_views,
    slicer,
    tiny_phantom,
)


def test_window_presets_set_the_ct_display(core, tiny_phantom):
    from DKOARSegmentationMRML.geometry import add_ct_volume_node

    node = add_ct_volume_node(tiny_phantom.ct)
    assert review.apply_window_preset(node, "Bone") == (1000.0, 400.0)
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1000.0, 400.0) and not display.GetAutoWindowLevel()
    review.apply_window_preset(node, "Soft tissue")
    assert (display.GetWindow(), display.GetLevel()) == (400.0, 40.0)
    with pytest.raises(DKOARError, match="unknown window preset"):
        review.apply_window_preset(node, "Liver")


def test_the_structure_table_follows_the_catalogue_with_volumes_colours_and_terminology(loaded):
    phantom, ct_node, seg_node, _ = loaded
    rows = review.structure_rows(seg_node, ct_node)
    catalogue = default_catalogue()
    assert [r.name for r in rows] == [s.name for s in catalogue]
    voxel_ml = np.prod(phantom.ct.spacing) / 1000
    for row in rows:
        structure = catalogue.by_name(row.name)
        assert row.group == structure.group
        assert row.color == "#%02x%02x%02x" % structure.rgb
        expected = np.count_nonzero(phantom.truth.labels == structure.label) * voxel_ml
        assert row.volume_ml == pytest.approx(expected, abs=0.01), row.name
        assert row.visible and row.opacity == pytest.approx(1.0)
    parotid = next(r for r in rows if r.name == "Parotid_L")
    assert parotid.terminology.endswith("(Left)") and "arotid" in parotid.terminology
    assert set(parotid.as_dict()) >= {"segment_id", "name", "group", "color", "volume_ml", "visible", "opacity"}


def test_visibility_and_opacity_of_a_structure(loaded):
    _, ct_node, seg_node, _ = loaded
    review.set_structure_visible(seg_node, "Brainstem", False)
    review.set_structure_opacity(seg_node, "Brainstem", 0.3)
    review.set_structure_opacity(seg_node, "Mandible", 7)  # clamped
    rows = {r.name: r for r in review.structure_rows(seg_node, ct_node, volumes={})}
    assert not rows["Brainstem"].visible and rows["Brainstem"].opacity == pytest.approx(0.3)
    assert rows["Mandible"].opacity == pytest.approx(1.0) and rows["Mandible"].visible
    display = seg_node.GetDisplayNode()
    assert display.GetSegmentOpacity3D("Brainstem") == pytest.approx(0.3)


def test_jumping_to_a_structure_centres_every_slice_view_on_one_of_its_voxels(core, loaded):
    phantom, ct_node, seg_node, _ = loaded
    views = slice_views(core.scene)
    mandible = default_catalogue().by_name("Mandible")
    r, a, s = review.jump_to_structure(seg_node, review.segment_id_of(seg_node, "Mandible"), ct_node)
    for node in views:
        slice_to_ras = node.GetSliceToRAS()
        assert [slice_to_ras.GetElement(i, 3) for i in range(3)] == pytest.approx([r, a, s], abs=1e-3)
    # the point is a voxel of the mandible (its centre of mass, inside a horseshoe, is not)
    ijk = np.linalg.inv(phantom.ct.affine) @ np.array([-r, -a, s, 1.0])
    i, j, k = np.round(ijk[:3]).astype(int)
    assert phantom.truth.labels[k, j, i] == mandible.label


def test_an_empty_structure_or_an_unknown_name_is_refused(loaded):
    _, ct_node, seg_node, _ = loaded
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        np.zeros(slicer.util.arrayFromVolume(ct_node).shape, np.uint8), seg_node, "Lens_L", ct_node)
    with pytest.raises(DKOARError, match="Lens_L is empty"):
        review.jump_to_structure(seg_node, "Lens_L", ct_node)
    with pytest.raises(DKOARError, match="Parotis is not a structure"):
        review.segment_id_of(seg_node, "Parotis")
    assert review.segment_id_of(seg_node, "parotid-l") == "Parotid_L"  # the catalogue ignores case and punctuation


def test_an_editor_without_a_segment_editor_node_reports_selection_and_effect(loaded):
    """trame-slicer's editor has no vtkMRMLSegmentEditorNode the observer could watch: the front end
    reports each selection and effect, and undo/redo that restore the segmentation are checked."""
    from DKOARSegmentationMRML.logic import SegmentationLogic

    _, ct_node, seg_node, _ = loaded
    logic = SegmentationLogic()
    seen = []
    logic.startCorrecting(seg_node, ct_node, listener=seen.append)
    logic.segmentSelected("Parotid_L")
    logic.segmentSelected("Parotid_L")  # the same again: no event
    logic.effectChosen("Paint")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_L", ct_node)
    logic.checkEdits()  # already seen: nothing new
    assert [(e.kind, e.segments) for e in seen] == [
        ("start", ()), ("select", ("Parotid_L",)), ("effect", ()), ("edit", ("Parotid_L",))]
    logic.effectChosen("")
    assert seen[-1].kind == "effect"
    assert logic.finishCorrecting().changed == {"Parotid_L"}
    logic.segmentSelected("Brainstem")  # after Finish nothing is timed
    assert len(seen) == 6 and seen[-1].kind == "finish"


def test_a_ct_added_by_the_logic_is_marked_and_its_folder_becomes_the_dicom_lookup(core, phantom_factory, tmp_path):
    import pydicom

    from DKOARSegmentationLib.input.ct_loader import load_ct
    from DKOARSegmentationLib.input.series_scan import scan_dicom_folder
    from DKOARSegmentationMRML.dicom_source import DicomFolderIndex
    from DKOARSegmentationMRML.logic import SegmentationLogic

    folder, phantom = phantom_factory(6, "HFS", TINY_GRID)
    ct = load_ct(folder / "ct")
    logic = SegmentationLogic()
    node = logic.addCTVolume(ct, "CT", DicomFolderIndex(scan=scan_dicom_folder(folder / "ct")))
    assert node.GetAttribute("DICOM.instanceUIDs").split() == [s.sop_instance_uid for s in ct.dicom.slices]
    seg_node = logic.loadResult(folder / "truth.seg.nrrd", node)
    path = logic.exportRTStruct(seg_node, node, str(tmp_path / "rtstruct.dcm"))
    assert pydicom.dcmread(path).ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == \
        ct.dicom.frame_of_reference_uid


def test_undo_and_redo_put_back_exactly_the_voxels_of_each_stroke(core, loaded):
    from DKOARSegmentationMRML.edit_observer import EditObserver
    from DKOARSegmentationMRML.labelmap_history import LabelmapHistory
    from DKOARSegmentationMRML.readback import segmentation_to_core

    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    history = LabelmapHistory(seg_node, ct_node, limit=2)
    sink = ListSink()
    observer = EditObserver(seg_node, sink)
    observer.start()
    assert not history.record() and not history.can_undo
    states = [segmentation_to_core(seg_node, ct_node).labels]
    box = _background_block(phantom.truth.labels)
    for name in ("Chiasm", "Brainstem", "Parotid_L"):  # three strokes; the limit keeps two
        _paint(logic, seg_node, ct_node, name, box)
        assert history.record()
        states.append(segmentation_to_core(seg_node, ct_node).labels)
    assert [e.segments for e in sink.events] == [("Chiasm",), ("Brainstem", "Chiasm"), ("Brainstem", "Parotid_L")]
    assert history.undo() and np.array_equal(segmentation_to_core(seg_node, ct_node).labels, states[2])
    assert sink.events[-1].segments == ("Brainstem", "Parotid_L"), "an undo is an edit of what it changes"
    assert history.undo() and np.array_equal(segmentation_to_core(seg_node, ct_node).labels, states[1])
    assert not history.undo() and not history.can_undo  # the limit
    assert not history.record(), "an undo is no new step"
    assert history.redo() and np.array_equal(segmentation_to_core(seg_node, ct_node).labels, states[2])
    # a new stroke drops what could be redone
    _paint(logic, seg_node, ct_node, "Mandible", box)
    assert history.record() and not history.can_redo
    assert history.undo() and np.array_equal(segmentation_to_core(seg_node, ct_node).labels, states[2])


def test_layers_made_or_merged_start_the_history_again(core, loaded):
    from DKOARSegmentationMRML.labelmap_history import LabelmapHistory

    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    history = LabelmapHistory(seg_node, ct_node)
    _paint(logic, seg_node, ct_node, "Chiasm", _background_block(phantom.truth.labels))
    assert history.record() and history.can_undo
    brain = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Brain", ct_node)
    seg_node.GetSegmentation().SeparateSegmentLabelmap("Brain")  # a layer of its own: not a voxel edit
    assert seg_node.GetSegmentation().GetNumberOfLayers() == 2
    assert not history.record() and not history.can_undo
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Brain", ct_node), brain)
    _paint(logic, seg_node, ct_node, "Mandible", _background_block(phantom.truth.labels))
    assert history.record() and history.undo()


def test_a_deferred_comparison_times_the_edit_when_it_happened(core, loaded):
    """The station shows a stroke before comparing the segments: the edit keeps the stroke's time."""
    from DKOARSegmentationMRML.edit_observer import EditObserver
    from Testing.test_slicer_mrml import Clock

    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    later, sink, clock = [], ListSink(), Clock()
    observer = EditObserver(seg_node, sink, clock=clock, defer=later.append)
    observer.start()
    clock.tick(3)
    _paint(logic, seg_node, ct_node, "Chiasm", _background_block(phantom.truth.labels))
    assert sink.events == [] and len(later) == 1, "one comparison asked for, however many events the stroke made"
    clock.tick(0.25)
    later.pop()()
    assert [(e.kind, e.segments, e.time) for e in sink.events] == [("edit", ("Chiasm",), 1003.0)]
    _paint(logic, seg_node, ct_node, "Brainstem", _background_block(phantom.truth.labels))
    observer.check()  # Finish compares at once, whatever is pending
    assert sink.events[-1].segments == ("Brainstem", "Chiasm") and sink.events[-1].time == 1003.25
    later.pop()()  # the pending call back finds nothing left
    assert len(sink.events) == 2
