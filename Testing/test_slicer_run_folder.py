"""A run's output folder opened again in the MRML logic (slicer-core): the segmentation with the
model's provenance and the run's review guidance (flags beside the structures, the review list, the
jump to an entry, the checks run again after a correction), as the browser station reopens a run.
Runs on slicer-core 5.12 here, and on the station's 5.11 through Testing/test_station_environment.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.phantom import PhantomGrid, generate_phantom
from Testing.run_folder_factory import review_entry, without, write_run_folder
from Testing.test_slicer_mrml import core, slice_views, slicer, tiny_phantom  # noqa: F401 (shared fixtures)

DELETED = "Parotid_R"


def test_a_run_folder_opens_again_with_its_flags_and_review_list(core, tiny_phantom, tmp_path):
    from DKOARSegmentationMRML.geometry import add_ct_volume_node
    from DKOARSegmentationMRML.logic import SegmentationLogic
    from DKOARSegmentationMRML.segmentation_run import model_identity

    truth = tiny_phantom.truth
    run = write_run_folder(tmp_path / "run-1", tiny_phantom.ct, without(truth, DELETED),
                           [review_entry(truth, "Brainstem")])
    assert any(f["structure"] == DELETED for f in run["flags"])
    ct_node = add_ct_volume_node(tiny_phantom.ct, "CT")
    logic = SegmentationLogic()
    node = logic.loadRunFolder(str(tmp_path / "run-1"), ct_node)
    assert model_identity(node) == ("a made-up run", "0", "0" * 64)
    flags = logic.structureFlags(node)
    assert flags[DELETED]["severity"] in ("warning", "error") and flags[DELETED]["text"]
    entries = logic.reviewEntries(node)
    assert [e["structure"] for e in entries] == ["Brainstem"] and entries[0]["text"].startswith("1. Brainstem: slices")

    views = slice_views(core.scene)
    logic.jumpToReviewEntry(entries[0])
    for view in views:
        to_ras = view.GetSliceToRAS()
        assert [to_ras.GetElement(i, 3) for i in range(3)] == pytest.approx(entries[0]["ras"], abs=1e-3)

    # drawn again (as a correction), the checks no longer flag it; the review list stays the model's
    label = [s for s in truth.structures if s.name == DELETED][0].label
    slicer.util.updateSegmentBinaryLabelmapFromArray((truth.labels == label).astype(np.uint8), node, DELETED, ct_node)
    logic.checkAgain(node, ct_node)
    assert DELETED not in logic.structureFlags(node)
    assert [e["structure"] for e in logic.reviewEntries(node)] == ["Brainstem"]


def test_a_run_folder_on_another_ct_or_without_its_record_is_refused(core, tiny_phantom, tmp_path):
    from DKOARSegmentationMRML.geometry import add_ct_volume_node
    from DKOARSegmentationMRML.logic import SegmentationLogic

    write_run_folder(tmp_path / "run-1", tiny_phantom.ct, tiny_phantom.truth)
    other = generate_phantom(6, "HFS", PhantomGrid(matrix=80, pixel_mm=2.6, slice_mm=4.0))
    logic = SegmentationLogic()
    with pytest.raises(DKOARError, match="open the CT the run was made on"):
        logic.loadRunFolder(str(tmp_path / "run-1"), add_ct_volume_node(other.ct, "other CT"))
    (tmp_path / "run-1" / "run.json").write_text("{not json")
    with pytest.raises(DKOARError, match="not a run record"):
        logic.loadRunFolder(str(tmp_path / "run-1"), add_ct_volume_node(tiny_phantom.ct, "CT"))
    (tmp_path / "run-1" / "run.json").write_text(json.dumps(["a list"]))
    with pytest.raises(DKOARError, match="not a run record"):
        logic.loadRunFolder(str(tmp_path / "run-1"), add_ct_volume_node(tiny_phantom.ct, "CT"))
    with pytest.raises(DKOARError, match="not a run's folder"):
        logic.loadRunFolder(str(tmp_path), add_ct_volume_node(tiny_phantom.ct, "CT"))
