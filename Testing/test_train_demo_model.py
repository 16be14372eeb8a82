"""The demo model's training recipe (tools/train_demo_model.py): which structures its patches are
centred on, since the smallest ones are learnt only when they are sampled often enough."""

import numpy as np
import pytest

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.structures.catalogue import default_catalogue
from tools import train_demo_model


def test_oversampling_by_name_sets_the_class_odds():
    catalogue = default_catalogue()
    n_classes = catalogue.max_label + 1
    factors = train_demo_model.parse_oversample("Cochlea_L=4, cochlea_r=4,Chiasm=2")
    assert factors == {catalogue.by_name("Cochlea_L").label: 4.0, catalogue.by_name("Cochlea_R").label: 4.0,
                       catalogue.by_name("Chiasm").label: 2.0}
    odds = train_demo_model.foreground_class_odds(n_classes, factors)
    assert odds[0] == 0 and np.isclose(odds.sum(), 1.0)
    cochlea, brain = catalogue.by_name("Cochlea_L").label, catalogue.by_name("Brain").label
    assert np.isclose(odds[cochlea], 4 * odds[brain])
    with pytest.raises(DKOARError, match="Cochlea_X"):
        train_demo_model.parse_oversample("Cochlea_X=4")


def test_foreground_patches_are_centred_on_the_chosen_structure():
    """With all the odds on one structure, every foreground patch holds it, wherever it lies."""
    rng = np.random.default_rng(0)
    shape = (60, 120, 120)
    labels = np.zeros(shape, np.uint8)
    labels[50:53, 100:103, 5:8] = 7  # a cochlea-sized structure near a corner
    labels[10:40, 20:80, 30:90] = 1
    case = {"image": rng.normal(size=shape).astype(np.float32), "labels": labels, "pad": -1.0,
            "where": {1: np.argwhere(labels == 1), 7: np.argwhere(labels == 7)}}
    odds = train_demo_model.foreground_class_odds(35, {7: 1.0, **{c: 0.0 for c in range(1, 35) if c != 7}})
    for _ in range(10):
        image, patch_labels = train_demo_model.sample_patch(case, rng, 35, True, odds)
        assert image.shape == tuple(train_demo_model.PATCH_ZYX)
        assert np.count_nonzero(patch_labels == 7) == 27
