"""The MRML glue (DKOARSegmentation/DKOARSegmentationMRML) on real Slicer objects.

Runs on Kitware's Qt-free build of Slicer 5.12 (``slicer-core`` on PyPI, in the test extra): a real
MRML scene, the application logic with the Volumes, Segmentations, Terminologies, SubjectHierarchy
(and Colors) module logics registered, real segmentation and Segment Editor nodes and real VTK
events. Only the Qt panel and the Slicer self-test remain untested here.

Small phantoms (96 x 96 pixels of 2.6 mm, 4 mm slices) keep the suite light.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's Qt-free libraries, PyPI) is not installed")
vtk = pytest.importorskip("vtk")

REPO = Path(__file__).resolve().parent.parent

from DKOARSegmentationLib.errors import DKOARError  # noqa: E402
from DKOARSegmentationLib.monitoring.correction_timing import correction_times  # noqa: E402
from DKOARSegmentationLib.output.rtstruct_writer import RTStructOptions  # noqa: E402
from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom  # noqa: E402
from DKOARSegmentationLib.structures.catalogue import default_catalogue  # noqa: E402
from DKOARSegmentationMRML.application import bind_slicer_namespace  # noqa: E402
from DKOARSegmentationMRML.correction_session import CorrectionSession  # noqa: E402
from DKOARSegmentationMRML.edit_observer import EditObserver  # noqa: E402
from DKOARSegmentationMRML.geometry import add_ct_volume_node, ras_from_lps_affine, volume_node_affine_lps  # noqa: E402
from DKOARSegmentationMRML.readback import segmentation_to_core  # noqa: E402
from DKOARSegmentationMRML.result_loading import load_seg_nrrd, load_segmentation, segment_ids  # noqa: E402
from DKOARSegmentationMRML.terminology import segment_codes  # noqa: E402

TINY_GRID = PhantomGrid(matrix=96, pixel_mm=2.6, slice_mm=4.0)


# ---------------------------------------------------------------------------------------------
# a Slicer application without Qt


class SlicerCore:
    """What Slicer's application sets up for module logics and slicer.util, without the GUI."""

    MODULE_LOGICS = (
        ("Colors", "vtkSlicerColorLogic"),
        ("Volumes", "vtkSlicerVolumesLogic"),
        ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
        ("Terminologies", "vtkSlicerTerminologiesModuleLogic"),
        ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    )

    def __init__(self, share_dir: Path):
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.logics = {}
        warnings = vtk.vtkObject.GetGlobalWarningDisplay()
        vtk.vtkObject.GlobalWarningDisplayOff()  # no Slicer home: the default colour/terminology files are absent
        try:
            for name, class_name in self.MODULE_LOGICS:
                logic = getattr(slicer, class_name)()
                if name == "Terminologies":
                    # terminology files load only from a share directory given to the logic
                    logic.SetModuleShareDirectory(str(share_dir))
                logic.SetMRMLApplicationLogic(self.app_logic)
                logic.SetMRMLScene(self.scene)
                self.app_logic.SetModuleLogic(name, logic)
                self.logics[name] = logic
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(warnings)
        # slicer.util's segment helpers call slicer.modules.<name>.logic() and use slicer.mrmlScene
        self._restore = bind_slicer_namespace(self.scene, self.app_logic, [name for name, _ in self.MODULE_LOGICS])

    def close(self) -> None:
        self.scene.Clear(1)
        self._restore()


@pytest.fixture
def core(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    app = SlicerCore(share)
    yield app
    app.close()


@pytest.fixture(scope="module")
def tiny_phantom():
    return generate_phantom(seed=5, position="HFS", grid=TINY_GRID)


class Clock:
    """A clock the test moves by hand, so that timings are exact."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class ListSink:
    def __init__(self):
        self.events = []
        self.cases = []

    def record_event(self, event):
        self.events.append(event)

    def record_case(self, result):
        self.cases.append(result)


def _ct_under_a_study(core, ct):
    """The CT node placed under patient -> study in the subject hierarchy, as the DICOM module does."""
    node = add_ct_volume_node(ct, "Phantom CT")
    sh = core.scene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Phantom patient")
    study = sh.CreateStudyItem(patient, "Phantom study")
    # in Slicer the subject hierarchy plugins (Qt) add an item for each new data node; here we do
    item = sh.GetItemByDataNode(node) or sh.CreateItem(study, node)
    sh.SetItemParent(item, study)
    return node, study


@pytest.fixture
def loaded(core, tiny_phantom):
    """CT and truth in the scene: (phantom, CT node, segmentation node, study item)."""
    ct_node, study = _ct_under_a_study(core, tiny_phantom.ct)
    seg_node = load_segmentation(tiny_phantom.truth, ct_node)
    return tiny_phantom, ct_node, seg_node, study


def _editor(core, seg_node, ct_node):
    """A Segment Editor without Qt: its parameter node and vtkSlicerSegmentEditorLogic (Slicer >= 5.10)."""
    editor_node = core.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(core.scene)
    logic.SetMRMLApplicationLogic(core.app_logic)
    logic.SetSegmentEditorNode(editor_node)
    logic.SetSegmentationNode(seg_node)
    logic.SetSourceVolumeNode(ct_node)
    return editor_node, logic


def slice_views(scene) -> list:
    """The three slice views of a Slicer layout, added to ``scene`` (slicer-core has no layout manager)."""
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    views = []
    for orientation in ("Axial", "Sagittal", "Coronal"):
        node = slicer.vtkMRMLSliceNode()
        node.SetLayoutName(orientation)
        node.SetDefaultOrientation(orientation)
        node.SetOrientation(orientation)
        node.SetDimensions(200, 200, 1)
        node.SetFieldOfView(250, 250, 1)
        views.append(scene.AddNode(node))
    return views


def _paint(logic, seg_node, ct_node, segment_id, region, mode=None):
    """What a paint stroke does in the end: a modifier labelmap on the CT grid applied to a segment."""
    modifier = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(ct_node)
    from vtk.util.numpy_support import vtk_to_numpy

    dims = modifier.GetDimensions()
    values = np.zeros((dims[2], dims[1], dims[0]), dtype=np.uint8)
    values[region] = 1
    modifier.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(modifier.GetPointData().GetScalars())[:] = values.ravel()
    modifier.Modified()
    logic.SaveStateForUndo()
    logic.ModifySegmentByLabelmap(seg_node, segment_id, modifier,
                                  slicer.vtkSlicerSegmentEditorLogic.ModificationModeAdd if mode is None else mode,
                                  False, False)  # not per segment; masking (and overwriting) as the effects do


def _background_block(labels, size=(2, 3, 3)):
    """A block of background voxels inside the head (a place to paint without touching other structures)."""
    body = np.argwhere(labels == 0)
    k0 = labels.shape[0] // 2
    for k in range(k0, labels.shape[0] - size[0]):
        for j in range(20, labels.shape[1] - 20 - size[1], 3):
            for i in range(20, labels.shape[2] - 20 - size[2], 3):
                box = (slice(k, k + size[0]), slice(j, j + size[1]), slice(i, i + size[2]))
                if not labels[box].any():
                    return box
    raise AssertionError(f"no background block among {len(body)} background voxels")


def _grow(mask, voxels=1):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=voxels)


# ---------------------------------------------------------------------------------------------
# loading


def test_geometry_lps_ras_round_trip(core, tiny_phantom):
    node = add_ct_volume_node(tiny_phantom.ct)
    assert np.allclose(volume_node_affine_lps(node), tiny_phantom.ct.affine)
    assert np.allclose(ras_from_lps_affine(tiny_phantom.ct.affine)[:2, 3], -tiny_phantom.ct.affine[:2, 3])
    assert np.array_equal(slicer.util.arrayFromVolume(node), tiny_phantom.ct.voxels)


def test_result_loads_as_named_coloured_coded_segments_under_the_study(loaded):
    phantom, ct_node, seg_node, study = loaded
    catalogue = default_catalogue()
    segmentation = seg_node.GetSegmentation()
    ids = segment_ids(seg_node)
    assert len(ids) == len(catalogue) == 34
    assert [segmentation.GetSegment(i).GetName() for i in ids] == [s.name for s in catalogue]
    identities = set()
    for structure in catalogue:
        segment = segmentation.GetSegment(structure.name)
        assert np.allclose(segment.GetColor(), [c / 255 for c in structure.rgb], atol=1e-6), structure.name
        codes = segment_codes(segment)
        assert codes is not None, structure.name
        assert codes.category == structure.category
        assert codes.type == structure.type, structure.name
        assert codes.modifier == structure.modifier, structure.name
        identities.add((codes.type.value, codes.modifier.value if codes.modifier else ""))
    assert len(identities) == 34, "left and right must differ by their laterality modifier"
    assert segment_codes(segmentation.GetSegment("Parotid_L")).modifier.meaning == "Left"
    assert segment_codes(segmentation.GetSegment("Parotid_R")).modifier.meaning == "Right"
    # one shared layer, as Slicer itself makes when it reads a .seg.nrrd
    assert segmentation.GetNumberOfLayers() == 1
    # reference geometry and subject hierarchy
    assert seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is ct_node
    assert segmentation.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    sh = seg_node.GetScene().GetSubjectHierarchyNode()
    assert sh.GetItemParent(sh.GetItemByDataNode(seg_node)) == study
    assert sh.GetItemLevel(study) == "Study"


def test_terminology_without_vtkSegment_SetTerminology_uses_the_tag(core):
    """Slicer <= 5.8 has no vtkSegment.SetTerminology: the same tag is written by hand."""
    from DKOARSegmentationMRML.terminology import set_segment_terminology, terminology_entry_string

    class OldSegment:  # a vtkSegment as Slicer 5.8 offers it
        def __init__(self):
            self.segment = slicer.vtkSegment()

        def __getattr__(self, name):
            if name == "SetTerminology":
                raise AttributeError(name)
            return getattr(self.segment, name)

    structure = default_catalogue().by_name("OpticNerve_R")
    old = OldSegment()
    set_segment_terminology(old, structure)
    assert old.segment.GetTerminology() == terminology_entry_string(structure)
    assert segment_codes(old.segment).modifier == structure.modifier


def test_segments_read_back_as_the_same_label_map(loaded):
    phantom, ct_node, seg_node, _ = loaded
    parotid = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    assert np.array_equal(parotid > 0, phantom.truth.labels == default_catalogue().by_name("Parotid_L").label)
    back = segmentation_to_core(seg_node, ct_node)
    assert np.array_equal(back.labels, phantom.truth.labels)
    assert np.allclose(back.affine, phantom.truth.affine)
    assert [s.name for s in back.structures] == [s.name for s in default_catalogue()]


def test_the_pipeline_seg_nrrd_loads_alike(core, tiny_phantom, tmp_path):
    from DKOARSegmentationLib.output.label_maps import write_seg_nrrd

    path = tmp_path / "segmentation.seg.nrrd"
    write_seg_nrrd(tiny_phantom.truth, path)
    ct_node = add_ct_volume_node(tiny_phantom.ct)
    seg_node = load_seg_nrrd(path, ct_node)
    assert len(segment_ids(seg_node)) == 34
    assert np.array_equal(segmentation_to_core(seg_node, ct_node).labels, tiny_phantom.truth.labels)
    # Slicer's own reader of the file agrees on names and terminology
    storage = core.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    other = core.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert storage.ReadData(other)
    for structure in default_catalogue():
        segment = other.GetSegmentation().GetSegment(other.GetSegmentation().GetSegmentIdBySegmentName(structure.name))
        assert segment_codes(segment).type == structure.type
        assert segment_codes(segment).modifier == structure.modifier


def test_an_empty_structure_is_loaded_as_not_started(core, tiny_phantom):
    from DKOARSegmentationLib.volume import Segmentation

    lens = default_catalogue().by_name("Lens_L").label
    labels = tiny_phantom.truth.labels.copy()
    labels[labels == lens] = 0
    ct_node = add_ct_volume_node(tiny_phantom.ct)
    seg_node = load_segmentation(Segmentation(labels, tiny_phantom.truth.affine, tiny_phantom.truth.structures), ct_node)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation = seg_node.GetSegmentation()
    assert logic.GetSegmentStatus(segmentation.GetSegment("Lens_L")) == logic.NotStarted
    assert logic.GetSegmentStatus(segmentation.GetSegment("Lens_R")) == logic.Completed
    assert not slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Lens_L", ct_node).any()


def test_reading_layers_directly_equals_slicer_resampling(core, loaded):
    from DKOARSegmentationMRML.readback import segment_mask, segment_masks

    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_L", ct_node)
    _paint(logic, seg_node, ct_node, "Chiasm", _background_block(phantom.truth.labels))
    assert seg_node.GetSegmentation().GetNumberOfLayers() >= 2
    fast = segment_masks(seg_node, ct_node)
    assert len(fast) == 34
    for segment_id in segment_ids(seg_node):
        assert np.array_equal(fast[segment_id].full(), segment_mask(seg_node, segment_id, ct_node)), segment_id


def test_overlapping_segments_give_their_voxels_to_the_smaller_structure():
    from DKOARSegmentationMRML.readback import ReadbackReport, SegmentMask, masks_to_labels

    catalogue = default_catalogue()
    big, small = np.zeros((4, 8, 8), bool), np.zeros((4, 8, 8), bool)
    big[1:3, 1:7, 1:7] = True
    small[2:4, 5:8, 5:8] = True
    report = ReadbackReport()
    labels = masks_to_labels({"Mandible": SegmentMask.from_full(big), "Parotid_L": SegmentMask.from_full(small)},
                             big.shape, catalogue, report)
    assert np.array_equal(labels == catalogue.by_name("Parotid_L").label, small)
    assert np.array_equal(labels == catalogue.by_name("Mandible").label, big & ~small)
    assert report.overlaps == {"Mandible/Parotid_L": int((big & small).sum())}
    assert SegmentMask.from_full(small).same_voxels(SegmentMask.from_full(small.copy()))
    assert not SegmentMask.from_full(small).same_voxels(SegmentMask.from_full(big))
    assert SegmentMask.from_full(np.zeros_like(big)).empty


def test_a_label_map_on_another_grid_is_refused(core, tiny_phantom):
    from DKOARSegmentationLib.errors import DKOARError
    from DKOARSegmentationLib.volume import Segmentation

    ct_node = add_ct_volume_node(tiny_phantom.ct)
    shifted = tiny_phantom.truth.affine.copy()
    shifted[:3, 3] += 5.0
    with pytest.raises(DKOARError, match="grid"):
        load_segmentation(Segmentation(tiny_phantom.truth.labels, shifted, tiny_phantom.truth.structures), ct_node)


# ---------------------------------------------------------------------------------------------
# observing edits


def test_an_array_edit_is_seen_with_its_segment(loaded):
    phantom, ct_node, seg_node, _ = loaded
    sink, clock = ListSink(), Clock()
    observer = EditObserver(seg_node, sink, clock=clock)
    observer.start()
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    clock.tick(4)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_L", ct_node)
    edits = [e for e in sink.events if e.kind == "edit"]
    assert [e.segments for e in edits] == [("Parotid_L",)]
    assert edits[0].time == 1004.0
    # writing back a segment unchanged is no edit
    same = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Brainstem", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(same, seg_node, "Brainstem", ct_node)
    assert [e.segments for e in sink.events if e.kind == "edit"] == [("Parotid_L",)]
    observer.stop()
    slicer.util.updateSegmentBinaryLabelmapFromArray(np.zeros_like(mask), seg_node, "Parotid_L", ct_node)
    assert len(sink.events) == 1, "a stopped observer records nothing"


def test_a_segment_editor_edit_and_its_undo_are_seen(core, loaded):
    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    sink, clock = ListSink(), Clock()
    observer = EditObserver(seg_node, sink, editor_node=editor_node, clock=clock)
    observer.start()
    clock.tick(1)
    logic.SetCurrentSegmentID("Chiasm")
    clock.tick(1)
    editor_node.SetActiveEffectName("Paint")
    clock.tick(3)
    chiasm = default_catalogue().by_name("Chiasm").label
    before = np.count_nonzero(phantom.truth.labels == chiasm)
    box = _background_block(phantom.truth.labels)
    _paint(logic, seg_node, ct_node, "Chiasm", box)
    assert [(e.kind, e.segments) for e in sink.events] == [
        ("select", ("Chiasm",)), ("effect", ()), ("edit", ("Chiasm",))]
    assert np.count_nonzero(slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Chiasm", ct_node)) > before
    clock.tick(2)
    logic.Undo()  # restores every segment of the segmentation: only the one that changed is an edit
    assert sink.events[-1].kind == "edit" and sink.events[-1].segments == ("Chiasm",)
    assert np.count_nonzero(slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Chiasm", ct_node)) == before
    assert len(sink.events) == 4
    timing = correction_times(sink.events)
    assert timing.structures["Chiasm"].edits == 2
    assert timing.structures["Chiasm"].active_s == pytest.approx(5.0)


def test_one_stroke_changing_two_segments_counts_for_both(core, loaded):
    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    editor_node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    observer = EditObserver(seg_node, ListSink(), editor_node=editor_node)
    observer.start()
    labels = phantom.truth.labels
    catalogue = default_catalogue()
    brainstem = labels == catalogue.by_name("Brainstem").label
    # paint "Brain" over a part of the brainstem: the brainstem loses what the brain gains
    k = int(np.argwhere(brainstem)[:, 0].mean())
    region = np.zeros(labels.shape, bool)
    region[k] = brainstem[k]
    _paint(logic, seg_node, ct_node, "Brain", region)
    assert observer.events[-1].kind == "edit"
    assert observer.events[-1].segments == ("Brain", "Brainstem")


# ---------------------------------------------------------------------------------------------
# a correction session


def test_finish_finds_exactly_the_edited_structures(core, loaded):
    phantom, ct_node, seg_node, _ = loaded
    editor_node, logic = _editor(core, seg_node, ct_node)
    sink, clock = ListSink(), Clock()
    session = CorrectionSession(seg_node, ct_node, sink, editor_node=editor_node, clock=clock, idle_cutoff_s=30)
    session.start()
    clock.tick(2)
    logic.SetCurrentSegmentID("Parotid_L")
    clock.tick(5)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_L", ct_node)
    clock.tick(100)  # a pause: not correction time
    logic.SetCurrentSegmentID("Chiasm")
    clock.tick(6)
    _paint(logic, seg_node, ct_node, "Chiasm", _background_block(phantom.truth.labels))
    clock.tick(1)
    same = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Mandible", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(same, seg_node, "Mandible", ct_node)  # touched, not changed
    assert session.live_timing().structures["Parotid_L"].active_s == pytest.approx(5.0)
    clock.tick(3)
    result = session.finish()
    assert result.changed == {"Parotid_L", "Chiasm"}
    assert len(result.unchanged) == 32 and "Mandible" in result.unchanged
    assert result.timing.structures["Parotid_L"].active_s == pytest.approx(5.0)
    assert result.timing.structures["Chiasm"].active_s == pytest.approx(6.0)
    assert result.timing.structures["Parotid_L"].edits == 1
    assert "Mandible" not in result.timing.structures
    assert [e.kind for e in result.events][0] == "start" and result.events[-1].kind == "finish"
    assert sink.events == list(result.events) and sink.cases == [result]
    assert not session.running
    assert np.array_equal(result.baseline.labels, phantom.truth.labels)
    parotid = default_catalogue().by_name("Parotid_L").label
    assert np.count_nonzero(result.final.labels == parotid) > np.count_nonzero(phantom.truth.labels == parotid)


def test_a_deleted_segment_is_a_change(loaded):
    phantom, ct_node, seg_node, _ = loaded
    session = CorrectionSession(seg_node, ct_node)
    session.start()
    seg_node.GetSegmentation().RemoveSegment("Lens_L")
    result = session.finish()
    assert result.changed == {"Lens_L"} and result.removed == {"Lens_L"}


def test_events_and_the_case_go_to_the_correction_log(loaded, tmp_path):
    correction_log = pytest.importorskip("DKOARSegmentationLib.monitoring.correction_log")
    from DKOARSegmentationMRML.correction_log_sink import CorrectionLogSink, events_from_log

    phantom, ct_node, seg_node, _ = loaded
    clock = Clock()
    with correction_log.open_log(tmp_path / "corrections.sqlite") as log:
        case_id = log.start_case(site="test", model_name="phantom truth")
        session = CorrectionSession(seg_node, ct_node, CorrectionLogSink(log, case_id), clock=clock)
        session.start()
        clock.tick(4)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Submandibular_L", ct_node)
        slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Submandibular_L",
                                                         ct_node)
        # before Finish, the events are already in the file (closing Slicer here loses nothing)
        with correction_log.open_log(tmp_path / "corrections.sqlite") as reader:
            assert [(e["kind"], e["structure"]) for e in reader.events(case_id)] == [
                ("start", None), ("edit", "Submandibular_L")]
        clock.tick(2)
        result = session.finish()
        rows = log.structure_results(case_id)
        assert rows["Submandibular_L"]["unchanged"] == 0 and rows["Submandibular_L"]["edits"] == 1
        assert rows["Submandibular_L"]["active_s"] == pytest.approx(4.0)
        assert rows["Submandibular_L"]["dice"] < 1.0
        assert rows["Brainstem"]["unchanged"] == 1 and rows["Brainstem"]["dice"] == pytest.approx(1.0)
        assert log.cases()[0]["finished_at"]
        replayed = correction_times(events_from_log(log.events(case_id)))
        assert replayed.structures["Submandibular_L"].active_s == result.timing.structures["Submandibular_L"].active_s


# ---------------------------------------------------------------------------------------------
# export


def _rois(path):
    ds = pydicom.dcmread(path)
    names = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    out = {}
    for roi, contour in zip(ds.StructureSetROISequence, ds.ROIContourSequence):
        assert contour.ReferencedROINumber == roi.ROINumber
        identity = roi.RTROIIdentificationCodeSequence[0] if "RTROIIdentificationCodeSequence" in roi else None
        codes = None
        if identity is not None:
            modifier = identity.get("SegmentedPropertyTypeModifierCodeSequence")
            codes = (identity.CodeValue, identity.CodingSchemeDesignator,
                     modifier[0].CodeValue if modifier else "")
        contours = [tuple(float(v) for v in c.ContourData) for c in contour.get("ContourSequence", [])]
        out[names[roi.ROINumber]] = {"codes": codes, "contours": contours, "algorithm": roi.ROIGenerationAlgorithm,
                                     "colour": tuple(contour.ROIDisplayColor)}
    return ds, out


def _cli_export_and_nodes(phantom_factory, command: str, cli_path: Path):
    """A small phantom exported by ``dkoar COMMAND`` from its truth.seg.nrrd, and the same phantom
    on real nodes: (folder, phantom, ct, CT volume node, segmentation node)."""
    from DKOARSegmentationLib.input.ct_loader import load_ct

    folder, phantom = phantom_factory(6, "HFS", TINY_GRID)
    done = subprocess.run([sys.executable, "-m", "DKOARSegmentationLib.cli", command, "--ct", str(folder / "ct"),
                           "--labels", str(folder / "truth.seg.nrrd"), "--out", str(cli_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ct = load_ct(folder / "ct")
    ct_node = add_ct_volume_node(ct, "CT from DICOM")
    return folder, phantom, ct, ct_node, load_seg_nrrd(folder / "truth.seg.nrrd", ct_node)


def test_export_from_the_node_equals_the_command_line(core, phantom_factory, tmp_path):
    from DKOARSegmentationMRML.export import export_rtstruct

    cli_path = tmp_path / "cli.dcm"
    _, _, ct, ct_node, seg_node = _cli_export_and_nodes(phantom_factory, "export-rtstruct", cli_path)
    # the command line's defaults (export-rtstruct: --label DKOAR --algorithm "user segmentation", omit empty)
    options = RTStructOptions(label="DKOAR", model_name="user segmentation", model_version="", empty_structures="omit",
                              series_description="DKOAR (unapproved)")
    slicer_path = export_rtstruct(seg_node, ct_node, ct, tmp_path / "slicer.dcm", options)
    cli_ds, cli_rois = _rois(cli_path)
    slicer_ds, slicer_rois = _rois(slicer_path)
    assert list(slicer_rois) == list(cli_rois) and len(cli_rois) >= 30
    for name, roi in cli_rois.items():
        assert slicer_rois[name]["codes"] == roi["codes"], name
        assert slicer_rois[name]["colour"] == roi["colour"], name
        assert slicer_rois[name]["contours"] == roi["contours"], name
        assert slicer_rois[name]["algorithm"] == "AUTOMATIC"
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "StructureSetLabel", "PatientID"):
        assert getattr(slicer_ds, keyword) == getattr(cli_ds, keyword), keyword

    # an edited structure is written SEMIAUTOMATIC, with its new contours
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_R", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_R", ct_node)
    _, edited = _rois(export_rtstruct(seg_node, ct_node, ct, tmp_path / "edited.dcm", options,
                                      edited={"Parotid_R"}))
    assert edited["Parotid_R"]["algorithm"] == "SEMIAUTOMATIC"
    assert edited["Parotid_R"]["contours"] != cli_rois["Parotid_R"]["contours"]
    assert {n for n, r in edited.items() if r["algorithm"] == "SEMIAUTOMATIC"} == {"Parotid_R"}
    assert edited["Parotid_L"]["contours"] == cli_rois["Parotid_L"]["contours"]


def _seg_segments(path):
    """Segment label -> (algorithm type, type code, modifier code) of a DICOM SEG."""
    ds = pydicom.dcmread(path)
    out = {}
    for item in ds.SegmentSequence:
        identity = item.SegmentedPropertyTypeCodeSequence[0]
        modifier = identity.get("SegmentedPropertyTypeModifierCodeSequence")
        out[item.SegmentLabel] = (item.SegmentAlgorithmType, identity.CodeValue,
                                  modifier[0].CodeValue if modifier else "")
    return out


def test_dicom_seg_and_seg_nrrd_from_the_node_equal_the_command_line(core, phantom_factory, tmp_path):
    from DKOARSegmentationLib.output.dicom_seg import read_dicom_seg, read_source_datasets
    from DKOARSegmentationLib.output.label_maps import read_labelmap
    from DKOARSegmentationMRML.export import export_dicom_seg, export_seg_nrrd

    cli_path = tmp_path / "cli_seg.dcm"
    folder, phantom, ct, ct_node, seg_node = _cli_export_and_nodes(phantom_factory, "export-seg", cli_path)
    headers = read_source_datasets(folder / "ct", ct)
    slicer_path = export_dicom_seg(seg_node, ct_node, ct, headers, tmp_path / "slicer_seg.dcm")
    cli_masks, slicer_masks = read_dicom_seg(cli_path, ct), read_dicom_seg(slicer_path, ct)
    assert list(slicer_masks) == list(cli_masks) and len(cli_masks) >= 30
    for name, mask in cli_masks.items():
        assert np.array_equal(slicer_masks[name], mask), name
        assert np.array_equal(mask, phantom.truth.labels == default_catalogue().by_name(name).label), name
    assert _seg_segments(slicer_path) == _seg_segments(cli_path)

    # .seg.nrrd: the same label map, names and terminology as the file it was loaded from
    nrrd_path = export_seg_nrrd(seg_node, ct_node, tmp_path / "slicer.seg.nrrd")
    back, truth = read_labelmap(nrrd_path), read_labelmap(folder / "truth.seg.nrrd")
    assert np.array_equal(back.labels, truth.labels)
    assert [s.name for s in back.structures if np.any(back.labels == s.label)] == \
        [s.name for s in truth.structures if np.any(truth.labels == s.label)]

    # an edited structure: its new voxels in both files, SEMIAUTOMATIC in the DICOM SEG
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_R", ct_node)
    grown = _grow(mask)
    slicer.util.updateSegmentBinaryLabelmapFromArray(grown.astype(np.uint8), seg_node, "Parotid_R", ct_node)
    edited_path = export_dicom_seg(seg_node, ct_node, ct, headers, tmp_path / "edited_seg.dcm",
                                   edited={"Parotid_R"})
    assert np.array_equal(read_dicom_seg(edited_path, ct)["Parotid_R"], grown)
    algorithms = {name: entry[0] for name, entry in _seg_segments(edited_path).items()}
    assert {n for n, a in algorithms.items() if a == "SEMIAUTOMATIC"} == {"Parotid_R"}
    edited_nrrd = read_labelmap(export_seg_nrrd(seg_node, ct_node, tmp_path / "edited.seg.nrrd"))
    assert np.array_equal(edited_nrrd.labels == default_catalogue().by_name("Parotid_R").label, grown)


# ---------------------------------------------------------------------------------------------
# the logic every front end calls (DKOARSegmentationMRML.logic), on the same real scene


def _dicom_ct_node(phantom_factory, seed=6, grid=TINY_GRID):
    """A phantom CT loaded from its DICOM files, as the DICOM module would: (folder, phantom, CT,
    CT node, the DICOM lookup)."""
    from DKOARSegmentationLib.input.ct_loader import load_ct
    from DKOARSegmentationMRML.dicom_source import DicomFolderIndex, mark_as_dicom

    folder, phantom = phantom_factory(seed, "HFS", grid)
    ct = load_ct(folder / "ct")
    node = add_ct_volume_node(ct, "CT from DICOM")
    mark_as_dicom(node, ct)
    return folder, phantom, ct, node, DicomFolderIndex(folder / "ct")


def test_the_logic_runs_a_whole_case(core, phantom_factory, tmp_path):
    """Segment the phantom in this process, correct one structure, Finish, export the RTSTRUCT and
    read it back: exactly the corrected structure differs from the AI result, and is SEMIAUTOMATIC."""
    from DKOARSegmentationLib.monitoring.correction_log import open_log
    from DKOARSegmentationLib.output.rtstruct_reader import read_rtstruct_masks
    from DKOARSegmentationMRML.logic import SegmentationLogic

    folder, phantom, ct, ct_node, database = _dicom_ct_node(phantom_factory, seed=8)
    logic = SegmentationLogic(dicomDatabase=database, temporaryFolder=str(tmp_path))
    progress = []
    seg_node, record = logic.segmentVolume(ct_node, str(tmp_path / "out"), "", "cpu",
                                           onProgress=lambda *a: progress.append(a))
    assert {"loading CT", "inference", "writing"} <= {stage for stage, _, _ in progress}
    assert Path(record["outputs"]["rtstruct"]).is_file() and record["device"] == "cpu"
    assert seg_node.GetAttribute("DKOAR.modelName") == record["model"]["name"] != ""
    assert len(segment_ids(seg_node)) == 34 and not logic.processRunning
    ai = segmentation_to_core(seg_node, ct_node)
    parotid = default_catalogue().by_name("Parotid_L")
    assert np.count_nonzero(ai.labels == parotid.label) > 0, "the demo model found no Parotid_L"

    log_path = tmp_path / "corrections.sqlite"
    logic.startCorrecting(seg_node, ct_node, editorNode=logic.getSegmentEditorNode(), logPath=str(log_path),
                          siteKeyPath=str(tmp_path / "site.key"))
    # grown into the background only: where structures overlap, the smaller keeps the voxels
    grown = _grow(slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node) > 0, 2) & np.isin(
        ai.labels, (0, parotid.label))
    slicer.util.updateSegmentBinaryLabelmapFromArray(grown.astype(np.uint8), seg_node, "Parotid_L", ct_node)
    assert logic.finishCorrecting().changed == {"Parotid_L"}
    with open_log(log_path) as log:
        case = log.cases()[-1]
        assert case["model_name"] == record["model"]["name"] and case["finished_at"]
        assert log.structure_results(case["case_id"])["Parotid_L"]["unchanged"] == 0

    path = logic.exportToNewFolder("RTSTRUCT", seg_node, ct_node, str(tmp_path / "exports"))
    assert path.parent.parent == tmp_path / "exports" and path.name == "rtstruct.dcm"
    ds = pydicom.dcmread(path)
    assert {r.ROIName for r in ds.StructureSetROISequence if r.ROIGenerationAlgorithm == "SEMIAUTOMATIC"} == {
        "Parotid_L"}
    back = read_rtstruct_masks(path, ct)
    for s in ai.structures:
        expected = grown if s.name == "Parotid_L" else ai.labels == s.label
        assert np.array_equal(back[s.name], expected), s.name
    assert not np.array_equal(grown, ai.labels == parotid.label)


def test_the_logic_logs_pseudonyms_and_exports_every_kind(core, phantom_factory, tmp_path):
    from DKOARSegmentationLib.monitoring.correction_log import open_log
    from DKOARSegmentationLib.output.label_maps import read_labelmap
    from DKOARSegmentationMRML.logic import SegmentationLogic

    folder, phantom, ct, ct_node, database = _dicom_ct_node(phantom_factory)
    logic = SegmentationLogic(dicomDatabase=database)
    seg_node = logic.loadResult(folder / "truth.seg.nrrd", ct_node)
    assert len(segment_ids(seg_node)) == 34 and seg_node.GetName() == "CT from DICOM OARs"
    editor_node = logic.getSegmentEditorNode()
    assert logic.getSegmentEditorNode() is editor_node  # a singleton of the scene

    seen = []
    log_path, key_path = tmp_path / "corrections.sqlite", tmp_path / "site.key"
    logic.startCorrecting(seg_node, ct_node, editorNode=editor_node, logPath=str(log_path), site="Aarhus",
                          siteKeyPath=str(key_path), listener=seen.append)
    with pytest.raises(DKOARError, match="already started"):
        logic.startCorrecting(seg_node, ct_node)
    editor_node.SetSelectedSegmentID("Parotid_L")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node)
    slicer.util.updateSegmentBinaryLabelmapFromArray(_grow(mask).astype(np.uint8), seg_node, "Parotid_L", ct_node)
    assert [e.kind for e in seen] == ["start", "select", "edit"]
    assert logic.finishCorrecting().changed == {"Parotid_L"}

    with open_log(log_path) as log:
        case = log.cases()[-1]
        assert case["site"] == "Aarhus" and case["finished_at"]
        assert len(case["patient_key"]) == 64 and len(case["study_key"]) == 64
        header = ct.dicom.header
        stored = log_path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("corrections.sqlite*"))
        for identifier in (str(header.PatientID), str(header.StudyInstanceUID), str(header.SeriesInstanceUID)):
            assert identifier.encode() not in stored, "an identifier in clear in the log"
        assert case["slice_thickness_mm"] == pytest.approx(4.0)
        assert [e["kind"] for e in log.events(case["case_id"])] == ["start", "select", "edit", "finish"]

    path = logic.exportRTStruct(seg_node, ct_node, str(tmp_path / "corrected.dcm"))
    ds = pydicom.dcmread(path)
    assert {r.ROIName for r in ds.StructureSetROISequence if r.ROIGenerationAlgorithm == "SEMIAUTOMATIC"} == {
        "Parotid_L"}
    assert ds.StudyInstanceUID == ct.dicom.study_instance_uid
    seg = pydicom.dcmread(logic.exportDicomSeg(seg_node, ct_node, str(tmp_path / "corrected_seg.dcm")))
    assert seg.StudyInstanceUID == ct.dicom.study_instance_uid
    assert {item.SegmentLabel for item in seg.SegmentSequence if item.SegmentAlgorithmType == "SEMIAUTOMATIC"} == {
        "Parotid_L"}
    nrrd = read_labelmap(logic.exportSegNrrd(seg_node, ct_node, str(tmp_path / "corrected.seg.nrrd")))
    corrected = slicer.util.arrayFromSegmentBinaryLabelmap(seg_node, "Parotid_L", ct_node).astype(bool)
    assert np.array_equal(nrrd.labels == default_catalogue().by_name("Parotid_L").label, corrected)


def test_a_volume_not_from_dicom_is_refused_for_dicom_exports(core, tiny_phantom, tmp_path):
    from DKOARSegmentationMRML.logic import SegmentationLogic

    ct_node = add_ct_volume_node(tiny_phantom.ct, "CT from an array")
    seg_node = load_segmentation(tiny_phantom.truth, ct_node)
    logic = SegmentationLogic()
    exports = tmp_path / "exports"
    for kind in ("RTSTRUCT", "DICOM SEG"):
        with pytest.raises(DKOARError, match="references the DICOM CT it was drawn on"):
            logic.exportToNewFolder(kind, seg_node, ct_node, str(exports))
    assert list(exports.iterdir()) == [], "a refused export left a folder behind"
    assert logic.exportToNewFolder(".seg.nrrd", seg_node, ct_node, str(exports)).is_file()


def test_the_logic_runs_the_pipeline_in_a_child_process(core, phantom_factory, tmp_path):
    """The panel's way: a real child process (json_run) through a launcher with
    launchConsoleProcess's signature, its JSON lines read, the result loaded; then Cancel."""
    psutil = pytest.importorskip("psutil")
    from DKOARSegmentationLib.pipeline.background import launch_child
    from DKOARSegmentationMRML.logic import SegmentationLogic

    _, _, _, ct_node, database = _dicom_ct_node(phantom_factory)
    launched = []

    def launcher(args, **kwargs):
        launched.append(args)
        return launch_child(args, **kwargs)

    logic = SegmentationLogic(dicomDatabase=database, launcher=launcher, python=sys.executable,
                              temporaryFolder=str(tmp_path))
    progress, completed = [], []
    process = logic.startSegmentationProcess(ct_node, str(tmp_path / "out"), "", "cpu",
                                             onProgress=lambda *a: progress.append(a),
                                             onCompleted=lambda *a: completed.append(a), structures="Brainstem,Lens_L")
    args = launched[-1]
    assert args[1:3] == ["-m", "DKOARSegmentationLib.pipeline.json_run"]
    assert args[args.index("--structures") + 1] == "Brainstem,Lens_L" and "--model" not in args
    assert logic.processRunning
    with pytest.raises(DKOARError, match="already running"):
        logic.startSegmentationProcess(ct_node, str(tmp_path / "out"))
    assert process.wait(timeout_s=300) == 0
    node, record, error = completed[0]
    assert error is None, error
    assert [segment for segment in segment_ids(node)] == ["Brainstem", "Lens_L"]
    assert node.GetAttribute("DKOAR.modelVersion") == record["model"]["version"] != ""
    assert progress and progress[-1][1] == 1.0 and not logic.processRunning
    assert not Path(args[3]).exists(), "the input copy was left behind"

    # Cancel: the child's process tree ends, the completion says so, the input copy is removed
    started = []
    process = logic.startSegmentationProcess(ct_node, str(tmp_path / "out2"), "", "cpu",
                                             onProgress=lambda *a: started.append(a),
                                             onCompleted=lambda *a: completed.append(a))
    while not started and process.poll():  # the child is at work
        time.sleep(0.05)
    logic.cancelSegmentation()
    assert process.wait(timeout_s=30) is not None
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
    assert completed[-1][0] is None and "cancelled" in completed[-1][2]
    assert not Path(launched[-1][3]).exists() and not logic.processRunning


def test_a_refused_run_starts_nothing(core, phantom_factory, tmp_path):
    from DKOARSegmentationMRML.logic import SegmentationLogic

    _, _, _, ct_node, database = _dicom_ct_node(phantom_factory)
    launched = []
    work = tmp_path / "work"
    work.mkdir()
    logic = SegmentationLogic(dicomDatabase=database, launcher=lambda *a, **k: launched.append(a),
                              temporaryFolder=str(work))
    with pytest.raises(DKOARError, match="'Parotis' is not a structure"):
        logic.startSegmentationProcess(ct_node, str(work / "out"), structures="Parotis")
    with pytest.raises(DKOARError, match="select a planning CT"):
        logic.segmentVolume(None, str(work / "out"))
    (work / "file").write_text("x")
    with pytest.raises(DKOARError, match="is a file, so nothing can be written below it"):
        logic.startSegmentationProcess(ct_node, str(work / "file" / "out"))
    assert launched == [] and not logic.processRunning
    assert sorted(p.name for p in work.iterdir()) == ["file"], "a refused run left files behind"
    assert len(logic.defaultStructures().split(",")) == 32
    assert logic.structureGroups()["Eyes and ears"][:2] == ["Cochlea_L", "Cochlea_R"]
    assert "not for clinical use" in logic.modelCard("").lower() and logic.isDemoModel(" ")


def test_the_mrml_logic_imports_with_only_the_packages_slicer_ships():
    """The panel makes the logic before it can install the core's extra packages: importing the
    MRML package must need only what Slicer 5.12 bundles (numpy, scipy, SimpleITK, pydicom, ...)."""
    code = """
import importlib.abc, sys
ABSENT = {"torch", "skimage", "slicerio", "nrrd", "matplotlib", "pylibjpeg", "psutil", "monai",
          "dynamic_network_architectures", "nnunetv2"}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"{name} is not installed")
sys.meta_path.insert(0, Absent())
import DKOARSegmentationMRML.logic, DKOARSegmentationMRML.dicom_source, DKOARSegmentationMRML.segmentation_run
import DKOARSegmentationMRML.practice
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# review guidance


def test_review_guidance_on_the_node_for_every_front_end_and_the_log(core, phantom_factory, tmp_path):
    """A run's flags and review list on the segmentation node: flag icons per structure, review entries
    with the RAS point a click jumps the slice views to, the checks again after an edit, and the
    guidance in the correction log when correcting starts."""
    from DKOARSegmentationLib.monitoring.correction_log import open_log
    from DKOARSegmentationLib.monitoring.guidance_log import read_guidance
    from DKOARSegmentationMRML.logic import SegmentationLogic
    from DKOARSegmentationMRML.review_guidance import GUIDANCE_ATTRIBUTE, set_guidance

    folder, phantom, ct, ct_node, database = _dicom_ct_node(phantom_factory, seed=6)
    seg_node = load_seg_nrrd(folder / "truth.seg.nrrd", ct_node)
    record = {"flags": [{"structure": "Parotid_L", "kind": "volume", "severity": "warning",
                         "message": "Parotid_L is 90 ml, above the adult range 5-80 ml."}],
              "review": [{"rank": 1, "structure": "Lens_L", "first_slice": 20, "last_slice": 22, "z_mm": [10.0, 18.0],
                          "centre_lps": [30.0, -60.0, 15.0], "score": 1.5, "uncertain_ml": 0.1, "band_mm": 1.4}],
              "uncertainty": {"method": "entropy of the averaged probabilities",
                              "structures": {"Lens_L": {"score": 1.5, "band_mm": 1.4, "uncertain_ml": 0.1}}}}
    set_guidance(seg_node, record)
    logic = SegmentationLogic(dicomDatabase=database, temporaryFolder=str(tmp_path))
    shown = logic.structureFlags(seg_node)
    assert set(shown) == {"Parotid_L"} and shown["Parotid_L"]["icon"] == "SP_MessageBoxWarning"
    assert "above the adult range" in shown["Parotid_L"]["text"]
    entries = logic.reviewEntries(seg_node)
    assert entries[0]["ras"] == [-30.0, 60.0, 15.0] and entries[0]["text"].startswith("1. Lens_L: slices 21-23")
    red = core.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    red.SetOrientationToAxial()
    logic.jumpToReviewEntry(entries[0])
    matrix = red.GetSliceToRAS()
    assert [matrix.GetElement(r, 3) for r in range(3)] == pytest.approx([-30.0, 60.0, 15.0], abs=1e-6)

    # checked again on the segmentation as it is: the truth has no flag above info
    assert not [f for f in logic.checkAgain(seg_node, ct_node) if f.severity != "info"]
    assert "Parotid_L" not in logic.structureFlags(seg_node) and logic.reviewEntries(seg_node)[0]["rank"] == 1
    set_guidance(seg_node, record)

    log_path = tmp_path / "corrections.sqlite"
    logic.startCorrecting(seg_node, ct_node, logPath=str(log_path), siteKeyPath=str(tmp_path / "site.key"))
    logic.finishCorrecting()
    with open_log(log_path) as log:
        kept = read_guidance(log.connection, log.cases()[-1]["case_id"])
    assert [f.structure for f in kept.flags] == ["Parotid_L"] and kept.review[0]["structure"] == "Lens_L"
    assert seg_node.GetAttribute(GUIDANCE_ATTRIBUTE)
