"""Model labels to catalogue structures, merged left/right labels split by patient side."""

import numpy as np
import pytest

from DKOARSegmentationLib.input.ct_loader import load_ct
from DKOARSegmentationLib.phantom import PATIENT_POSITIONS
from DKOARSegmentationLib.structures.model_labels import map_model_labels, to_catalogue_labels


def test_names_aliases_merged_and_unmapped(catalogue):
    model = {1: "Brain", 2: "Parotid_LR", 3: "OpticNrv_L", 4: "Glnd_Submand_R", 5: "Tumour", 6: "EyesFront_LR"}
    mapping = map_model_labels(model, catalogue)
    assert {v: s.name for v, s in mapping.direct.items()} == {1: "Brain", 3: "OpticNerve_L", 4: "Submandibular_R"}
    assert [(s.name for s in pair) for pair in mapping.merged.values()]
    assert [tuple(s.name for s in p) for p in mapping.merged.values()] == [("Parotid_L", "Parotid_R"), ("EyeFront_L", "EyeFront_R")]
    assert mapping.unmapped == {5: "Tumour"}
    assert "Chiasm" in [s.name for s in mapping.missing] and "Brain" not in [s.name for s in mapping.missing]


@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_merged_labels_split_by_patient_side_in_every_position(phantom_factory, catalogue, position):
    out, phantom = phantom_factory(5, position)
    ct = load_ct(out / "ct")
    truth = phantom.truth.labels
    # a DCPT-style model: left and right merged into one label
    merged_names = {"Parotid": 101, "Lens": 102, "Cochlea": 103, "Submandibular": 104}
    model_labels = np.zeros_like(truth)
    model_names = {}
    for stem, value in merged_names.items():
        for side in ("_L", "_R"):
            model_labels[truth == catalogue.by_name(stem + side).label] = value
        model_names[value] = stem + "_LR"
    model_labels[truth == catalogue.by_name("Brain").label] = 1
    model_names[1] = "Brain"
    mapping = map_model_labels(model_names, catalogue)
    seg = to_catalogue_labels(model_labels, mapping, ct)
    for stem in merged_names:
        for side in ("_L", "_R"):
            label = catalogue.by_name(stem + side).label
            assert np.array_equal(seg.labels == label, truth == label), (position, stem + side)
