import csv

import numpy as np
import pytest
from scipy import ndimage

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.resources import resources_dir
from DKOARSegmentationLib.structures.catalogue import load_catalogue
from DKOARSegmentationLib.structures.color_table import slicer_color_table_csv

REFERENCE_ORDER = [
    "Brain", "Brainstem", "SpinalCord", "Chiasm", "OpticNerve_L", "OpticNerve_R", "Cochlea_L", "Cochlea_R",
    "Lens_L", "Lens_R", "EyeFront_L", "EyeFront_R", "EyeBack_L", "EyeBack_R", "Lacrimal_L", "Lacrimal_R",
    "Parotid_L", "Parotid_R", "Submandibular_L", "Submandibular_R", "BuccalMuc_L", "BuccalMuc_R", "OralCavity",
    "Lips", "Mandible", "PCM_Up", "PCM_Mid", "PCM_Low", "LarynxSG", "LarynxG", "Esophagus", "Thyroid",
]


def test_the_32_national_structures_in_reference_order(catalogue):
    core = catalogue.core_structures
    assert [s.name for s in core] == REFERENCE_ORDER
    assert [s.label for s in core] == list(range(1, 33))
    assert len({s.name for s in catalogue}) == len(catalogue) == 34
    extras = [s for s in catalogue if not s.core]
    assert [(s.name, s.label) for s in extras] == [("Carotid_L", 33), ("Carotid_R", 34)]


def test_coded_identity_is_unique_and_lateralised(catalogue):
    identities = [s.identity for s in catalogue]
    assert len(set(identities)) == len(identities)
    for s in catalogue:
        assert s.category.value == "91723000" and s.category.scheme == "SCT"
        assert s.rt_roi_type == "ORGAN"
        if s.name.endswith("_L"):
            assert s.laterality == "L" and s.modifier.value == "7771000"
        elif s.name.endswith("_R"):
            assert s.laterality == "R" and s.modifier.value == "24028007"
        else:
            assert s.laterality == "" and s.modifier is None


def test_every_alias_resolves_to_exactly_one_structure(catalogue):
    for s in catalogue:
        for key in (s.name, s.tg263, *s.aliases):
            if key:
                assert catalogue.find(key) is s, key
                assert catalogue.find(key.upper()) is s
    assert catalogue.find("OpticNrv_L").name == "OpticNerve_L"
    assert catalogue.find("Glnd_Submand_R").name == "Submandibular_R"
    assert catalogue.find("Parotid_LR") is None  # merged labels are split elsewhere, never aliased


def test_an_ambiguous_alias_is_refused(catalogue, tmp_path):
    rows = list(csv.DictReader(open(resources_dir() / "structures.csv")))
    rows[1]["aliases"] = "Brain"  # Brainstem claims Brain's name
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DKOARError, match="ambiguous"):
        load_catalogue(path)


def test_tolerances_follow_nikolov(catalogue):
    expected = {"Brain": 1.01, "Brainstem": 2.5, "Cochlea_L": 1.25, "Lens_R": 0.98, "Mandible": 1.01,
                "OpticNerve_L": 2.5, "Parotid_R": 2.85, "SpinalCord": 2.93, "Submandibular_L": 2.02, "Thyroid": 2.0}
    for name, tol in expected.items():
        assert catalogue.by_name(name).tolerance_mm == tol


def _lab(rgb):
    """CIE L*a*b* (D65) of an sRGB colour."""
    c = np.asarray(rgb, float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_touching_structures_have_clearly_different_colours(catalogue, small_phantom):
    """Structures that touch in the phantom differ by a CIE76 colour difference of at least 20."""
    _, phantom = small_phantom
    labels = phantom.truth.labels
    pairs = set()
    for s in catalogue:
        grown = ndimage.binary_dilation(labels == s.label, iterations=2)
        for other in np.unique(labels[grown]):
            if other not in (0, s.label):
                pairs.add(tuple(sorted((s.label, int(other)))))
    assert len(pairs) >= 20  # the phantom's anatomy has many neighbours
    too_close = []
    for a, b in pairs:
        sa, sb = catalogue.by_label(a), catalogue.by_label(b)
        delta = float(np.linalg.norm(_lab(sa.rgb) - _lab(sb.rgb)))
        if delta < 20:
            too_close.append((sa.name, sb.name, round(delta, 1)))
    assert not too_close


def test_slicer_colour_table_is_generated_from_the_catalogue(catalogue):
    shipped = (resources_dir() / "DKOARSegmentation_ColorTable.csv").read_text()
    assert shipped == slicer_color_table_csv(catalogue), "run tools/update_color_table.py"
    rows = list(csv.DictReader(shipped.splitlines()))
    parotid_l = next(r for r in rows if r["Name"] == "Parotid_L")
    assert parotid_l["Type_CodeValue"] == "45289007" and parotid_l["TypeModifier_CodeValue"] == "7771000"
    assert parotid_l["LabelValue"] == "17"
