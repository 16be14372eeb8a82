"""Trainee mode in the MRML logic (DKOARSegmentationMRML.practice) on slicer-core: a practice round
from start to reference, with the reference and the AI result hidden, the edits timed, the scores,
the words, the overlay of too much and missed, and the history."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's Qt-free libraries, PyPI) is not installed")

from DKOARSegmentationLib.errors import DKOARError  # noqa: E402
from DKOARSegmentationLib.phantom import generate_phantom  # noqa: E402
from DKOARSegmentationLib.practice.history import read_history, trainee_key  # noqa: E402
from DKOARSegmentationMRML.practice import PracticeLogic  # noqa: E402
from DKOARSegmentationMRML.result_loading import load_segmentation, segment_ids  # noqa: E402

# the fixture "core" (a Slicer application without Qt) is the MRML tests' own
from Testing.test_slicer_mrml import TINY_GRID, Clock, _dicom_ct_node, core  # noqa: E402, F401


def _axis_step(affine, unit):
    """(array axis, index step) that moves one voxel along the LPS unit vector ``unit``."""
    for axis, column in {0: 2, 1: 1, 2: 0}.items():
        cosine = float(np.asarray(affine)[:3, column] @ np.asarray(unit)) / float(np.linalg.norm(affine[:3, column]))
        if abs(cosine) > 0.99:
            return axis, int(np.sign(cosine))
    raise AssertionError("no axis")


def test_a_practice_round_end_to_end_on_a_phantom(core, tmp_path):
    from DKOARSegmentationLib.monitoring.pseudonym import load_site_key

    truth = generate_phantom(5, "HFS", TINY_GRID).truth
    clock = Clock()
    logic = PracticeLogic(clock=clock)
    logic.historyPath, logic.trainee, logic.siteKeyPath = str(tmp_path / "practice.sqlite"), "anna", \
        str(tmp_path / "site.key")
    # an AI result of another case is on screen: the round hides it
    ai_ct = generate_phantom(6, "HFS", TINY_GRID)
    from DKOARSegmentationMRML.geometry import add_ct_volume_node

    ai_node = load_segmentation(ai_ct.truth, add_ct_volume_node(ai_ct.ct, "other CT"), "AI result")
    assert ai_node.GetDisplayNode().GetVisibility()

    practice = logic.startPhantomRound(5, "Parotid_L, brainstem", grid=TINY_GRID)
    assert practice.structures == ("Parotid_L", "Brainstem") and practice.running
    assert not ai_node.GetDisplayNode().GetVisibility()
    attempt = practice.attempt_node
    assert segment_ids(attempt) == ["Parotid_L", "Brainstem"]
    assert all(not slicer.util.arrayFromSegmentBinaryLabelmap(attempt, s, practice.volume_node).any()
               for s in segment_ids(attempt)), "the attempt starts empty"
    nodes = slicer.util.getNodesByClass("vtkMRMLSegmentationNode", core.scene)
    assert {n.GetName() for n in nodes} == {"AI result", attempt.GetName()}, "no reference in the scene"
    assert "Parotid gland" in logic.guidelineCard("Parotid_L").html()

    # the trainee draws the parotid two slices (8 mm) too high, and nothing for the brainstem
    parotid = truth.labels == 17
    axis, step = _axis_step(truth.affine, (0, 0, 1))
    drawn = np.roll(parotid, 2 * step, axis=axis)
    clock.tick(12.0)
    slicer.util.updateSegmentBinaryLabelmapFromArray(drawn.astype(np.uint8), attempt, "Parotid_L",
                                                     practice.volume_node)
    clock.tick(50.0)  # a pause before submitting
    scores = logic.submit()
    parotid_score, stem = scores["Parotid_L"], scores["Brainstem"]
    assert parotid_score.borders_mm["cranial"] == pytest.approx(8.0) and parotid_score.borders_mm["caudal"] == \
        pytest.approx(-8.0)
    assert parotid_score.feedback == ["cranial border 8.0 mm too high", "caudal border 8.0 mm too high"]
    assert 0 < parotid_score.dice < 1 and parotid_score.volume_attempt_ml == pytest.approx(
        parotid_score.volume_reference_ml)
    assert stem.attempt_empty and stem.feedback == ["the attempt is empty: nothing was drawn for this structure"]

    # the overlay: too much (attempt only) and missed (reference only), in two colours
    overlay = practice.overlay_node
    assert segment_ids(overlay)[:2] == ["Parotid_L too much", "Parotid_L missed"]
    too_much = slicer.util.arrayFromSegmentBinaryLabelmap(overlay, "Parotid_L too much", practice.volume_node) > 0
    missed = slicer.util.arrayFromSegmentBinaryLabelmap(overlay, "Parotid_L missed", practice.volume_node) > 0
    assert np.array_equal(too_much, drawn & ~parotid) and np.array_equal(missed, parotid & ~drawn)
    colours = {sid: overlay.GetSegmentation().GetSegment(sid).GetColor() for sid in segment_ids(overlay)}
    assert colours["Parotid_L too much"] != colours["Parotid_L missed"]
    stem_missed = slicer.util.arrayFromSegmentBinaryLabelmap(overlay, "Brainstem missed", practice.volume_node) > 0
    assert np.array_equal(stem_missed, truth.labels == 2)

    # the history: both attempts, the trainee keyed, the edit timed without the pause
    rows = read_history([tmp_path / "practice.sqlite"])
    key = load_site_key(tmp_path / "site.key", create=False)
    assert [r["structure"] for r in rows] == ["Parotid_L", "Brainstem"] and practice.stored == [1, 2]
    assert {r["trainee_key"] for r in rows} == {trainee_key(key, "anna")}
    assert rows[0]["active_s"] == pytest.approx(12.0) and rows[0]["edits"] == 1 and rows[0]["wall_s"] == \
        pytest.approx(62.0)
    assert rows[0]["case_label"] == "phantom seed 5 HFS" and rows[0]["border_cranial_mm"] == pytest.approx(8.0)

    # then the reference may be shown; ending the round shows the AI result again
    reference = logic.showReference()
    shown = slicer.util.arrayFromSegmentBinaryLabelmap(reference, "Parotid_L", practice.volume_node) > 0
    assert np.array_equal(shown, parotid) and reference.GetDisplayNode().GetVisibility()
    logic.endRound()
    assert ai_node.GetDisplayNode().GetVisibility() and not practice.running


def test_the_reference_is_shown_only_after_submitting_and_must_hold_the_structure(core, tmp_path):
    logic = PracticeLogic()
    with pytest.raises(DKOARError, match="start a practice round first"):
        logic.submit()
    with pytest.raises(DKOARError, match="choose the structures"):
        logic.startPhantomRound(5, "", grid=TINY_GRID)
    logic.startPhantomRound(5, ["Lens_L"], grid=TINY_GRID)
    with pytest.raises(DKOARError, match="submit the attempt before looking at the reference"):
        logic.showReference()
    with pytest.raises(DKOARError, match="a practice round is going on"):
        logic.startPhantomRound(5, ["Lens_L"], grid=TINY_GRID)
    logic.endRound()
    # no history configured: scored, not stored
    logic.startPhantomRound(5, ["Lens_L"], grid=TINY_GRID)
    assert logic.submit()["Lens_L"].attempt_empty and logic.round.stored == [] and logic.round.store_error == ""
    # a history but no trainee: still scored, and the reason it was not stored
    logic.historyPath = str(tmp_path / "practice.sqlite")
    assert logic.submit()["Lens_L"].attempt_empty and logic.round.stored == []
    assert "give the trainee's name" in logic.round.store_error


def test_a_round_against_an_rtstruct_needs_it_approved(core, phantom_factory, tmp_path):
    from DKOARSegmentationLib.output.rtstruct_writer import write_rtstruct

    folder, phantom, ct, ct_node, database = _dicom_ct_node(phantom_factory, seed=6)
    path = tmp_path / "reference.dcm"
    write_rtstruct(ct, phantom.truth, path)  # the project's writer says UNAPPROVED
    logic = PracticeLogic(dicomDatabase=database)
    with pytest.raises(DKOARError, match="UNAPPROVED"):
        logic.startRoundFromFile(ct_node, str(path), "Mandible")
    ds = pydicom.dcmread(path)
    ds.ApprovalStatus = "APPROVED"
    ds.save_as(path)
    with pytest.raises(DKOARError, match="the reference has no Spleen|not a structure"):
        logic.startRoundFromFile(ct_node, str(path), "Spleen")
    practice = logic.startRoundFromFile(ct_node, str(path), "Mandible")
    assert practice.case_kind == "rtstruct" and practice.study_uid == ct.dicom.study_instance_uid
    mandible = phantom.truth.labels == 25
    slicer.util.updateSegmentBinaryLabelmapFromArray(mandible.astype(np.uint8), practice.attempt_node, "Mandible",
                                                     ct_node)
    score = logic.submit()["Mandible"]
    assert score.dice == 1.0 and score.feedback == ["every border within 1.01 mm of the reference"]
    logic.endRound()
    # a reference segmentation already in the scene is hidden during the round
    reference_node = load_segmentation(phantom.truth, ct_node, "clinical contours")
    practice = logic.startRoundFromSegmentation(ct_node, reference_node, "Thyroid")
    assert not reference_node.GetDisplayNode().GetVisibility()
    logic.endRound()
    assert reference_node.GetDisplayNode().GetVisibility()
