"""The correction timer on recorded event streams."""

import pytest

from DKOARSegmentationLib.monitoring.correction_timing import EditorEvent as E
from DKOARSegmentationLib.monitoring.correction_timing import correction_times


def test_edits_with_an_idle_gap():
    events = [E(0, "start"), E(2, "select", ("Parotid_L",)), E(5, "edit", ("Parotid_L",)),
              E(9, "edit", ("Parotid_L",)), E(100, "edit", ("Parotid_L",)), E(104, "edit", ("Parotid_L",))]
    t = correction_times(events, idle_cutoff_s=30)
    p = t.structures["Parotid_L"]
    assert p.active_s == pytest.approx(3 + 4 + 4)  # select->edit, edit->edit; the 91 s pause is idle
    assert p.edits == 4
    assert p.wall_s == pytest.approx(102)  # from its selection to its last edit
    assert t.active_s == pytest.approx(11) and t.wall_s == pytest.approx(104)


def test_the_cut_off_is_a_setting():
    events = [E(0, "select", ("Lips",)), E(20, "edit", ("Lips",)), E(45, "edit", ("Lips",))]
    assert correction_times(events, idle_cutoff_s=30).structures["Lips"].active_s == pytest.approx(45)
    assert correction_times(events, idle_cutoff_s=10).structures["Lips"].active_s == 0


def test_one_stroke_changing_several_segments_counts_for_each():
    events = [E(0, "select", ("Parotid_L",)), E(6, "edit", ("Parotid_L", "Mandible"))]
    t = correction_times(events)
    assert t.structures["Parotid_L"].active_s == pytest.approx(6)
    assert t.structures["Mandible"].active_s == pytest.approx(6)
    assert t.structures["Mandible"].edits == 1
    assert t.active_s == pytest.approx(6)  # the clinician's time is counted once for the case


def test_interleaved_structures_get_their_own_intervals():
    events = [E(0, "select", ("A",)), E(4, "edit", ("A",)), E(5, "select", ("B",)), E(8, "edit", ("B",)),
              E(10, "select", ("A",)), E(12, "edit", ("A",))]
    t = correction_times(events)
    assert t.structures["A"].active_s == pytest.approx(4 + 2)
    assert t.structures["B"].active_s == pytest.approx(3)
    assert t.active_s == pytest.approx(9)


def test_undo_is_an_edit_of_what_it_changes_and_selection_alone_is_not_work():
    events = [E(0, "select", ("Brain",)), E(3, "edit", ("Brain",)), E(5, "undo", ("Brain",)),
              E(6, "select", ("Thyroid",)), E(25, "select", ("Chiasm",))]
    t = correction_times(events)
    assert t.structures["Brain"].edits == 2 and t.structures["Brain"].active_s == pytest.approx(5)
    assert t.structures["Thyroid"].active_s == 0 and t.structures["Thyroid"].edits == 0
    assert t.structures["Chiasm"].wall_s == 0


def test_events_out_of_order_and_unknown_kinds():
    events = [E(9, "edit", ("A",)), E(1, "select", ("A",))]
    assert correction_times(events).structures["A"].active_s == pytest.approx(8)
    with pytest.raises(ValueError):
        E(0, "scroll")
    assert correction_times([]).active_s == 0
